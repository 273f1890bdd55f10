//! The candle custom-op plumbing every kernel of this crate shares, so that each kernel file
//! keeps only its shapes and its math.
//!
//! No paper: candle 0.11's `CustomOp1` / `CustomOp2` / `CustomOp3` traits differ only in
//! their arity. A kernel implements [`Kernel`] once, whatever its arity (1 to 3 arguments,
//! and an op such as the convolution's may be applied with 2 or 3); the private wrapper
//! [`Op`] implements all three candle traits on top of it: it hands the forward pass its
//! arguments as [`Arg`]s (storage and layout), wraps the `Vec<f32>` it returns in a
//! `CpuStorage`, makes the incoming gradient contiguous and spreads the backward pass's
//! gradients over candle's tuple. [`apply`] and [`apply_no_bwd`] pick the candle call of the
//! right arity (making the arguments contiguous first, unless the kernel reads strides).
//!
//! Also here: the f32/CPU checks of the public functions ([`all_f32_cpu`],
//! [`require_f32_cpu`], [`same_dtype`]), the split of a backward kernel's packed output
//! ([`unpack`]), and [`Pointwise`], the one-pass elementwise activation with a one-pass
//! backward that ReLU and SiLU are instances of.

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Error, Layout, Result, Shape, Tensor,
};

use crate::par::par_map;

/// One argument of a kernel's forward pass: its CPU storage and its layout.
#[derive(Clone, Copy)]
pub(crate) struct Arg<'a> {
    pub storage: &'a CpuStorage,
    pub layout: &'a Layout,
}

impl<'a> Arg<'a> {
    /// The argument's shape.
    pub fn shape(&self) -> &'a Shape {
        self.layout.shape()
    }

    /// All the f32 data of the storage, no offset applied (for kernels that read strides
    /// through [`Arg::layout`]).
    pub fn storage_f32(&self, op: &str) -> Result<&'a [f32]> {
        match self.storage {
            CpuStorage::F32(v) => Ok(v.as_slice()),
            other => bail!("{op}: only f32 is supported, got {:?}", other.dtype()),
        }
    }

    /// The f32 elements of a contiguous argument, its offset applied.
    pub fn f32(&self, op: &str) -> Result<&'a [f32]> {
        let data = self.storage_f32(op)?;
        match self.layout.contiguous_offsets() {
            Some((start, end)) => Ok(&data[start..end]),
            None => bail!("{op}: input must be contiguous (call .contiguous() first)"),
        }
    }
}

/// The f32 elements of the first `N` arguments (each contiguous, offsets applied).
pub(crate) fn f32s<'a, const N: usize>(op: &str, args: &[Arg<'a>]) -> Result<[&'a [f32]; N]> {
    if args.len() < N {
        bail!("{op}: {} arguments, expected {N}", args.len())
    }
    let mut out = [&[][..]; N];
    for (o, a) in out.iter_mut().zip(args) {
        *o = a.f32(op)?;
    }
    Ok(out)
}

/// The gradients a [`Kernel`]'s backward pass returns, one per argument in order (missing
/// trailing entries count as `None`).
pub(crate) type Grads = Vec<Option<Tensor>>;

/// A CPU f32 kernel as a candle custom op of 1 to 3 arguments (see the module header).
pub(crate) trait Kernel: Send + Sync + 'static {
    /// Whether [`Kernel::forward`] reads its arguments through their layouts (any strides).
    /// Otherwise [`apply`] and [`apply_no_bwd`] make them contiguous first.
    const STRIDED: bool = false;

    /// candle's name for the op, also the prefix of its errors.
    fn name(&self) -> &'static str;

    /// The forward pass: the arguments, in the order applied -> the output's elements
    /// (contiguous) and shape.
    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)>;

    /// The backward pass: the gradients of `args` given the forward's output `res` and its
    /// gradient `grad` (contiguous). Only called for kernels applied with [`apply`]; the
    /// default is candle's "backward not supported".
    fn backward(&self, args: &[&Tensor], res: &Tensor, grad: &Tensor) -> Result<Grads> {
        let _ = (args, res, grad);
        Err(Error::BackwardNotSupported { op: self.name() })
    }
}

/// A [`Kernel`] as candle's `CustomOp1`, `CustomOp2` and `CustomOp3` (implemented by the
/// `impl_custom_op!` macro below).
struct Op<K>(K);

impl<K: Kernel> Op<K> {
    fn fwd(&self, args: &[Arg]) -> Result<(CpuStorage, Shape)> {
        let (data, shape) = self.0.forward(args)?;
        Ok((CpuStorage::F32(data), shape))
    }

    fn grads<const N: usize>(
        &self,
        args: [&Tensor; N],
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; N]> {
        let mut grads = self
            .0
            .backward(&args, res, &grad.contiguous()?)?
            .into_iter();
        Ok(std::array::from_fn(|_| grads.next().flatten()))
    }
}

/// Implements candle's custom-op trait of one arity for [`Op`]: one
/// `(storage, layout, argument, gradient)` name quadruple per argument.
macro_rules! impl_custom_op {
    (@grad $g:ident) => { Option<Tensor> };
    ($trait:ident: $(($s:ident, $l:ident, $a:ident, $g:ident)),+) => {
        // With one argument the gradient "tuple" is a parenthesised `Option<Tensor>`.
        #[allow(unused_parens)]
        impl<K: Kernel> $trait for Op<K> {
            fn name(&self) -> &'static str {
                self.0.name()
            }

            fn cpu_fwd(&self, $($s: &CpuStorage, $l: &Layout),+) -> Result<(CpuStorage, Shape)> {
                self.fwd(&[$(Arg { storage: $s, layout: $l }),+])
            }

            fn bwd(
                &self,
                $($a: &Tensor,)+
                res: &Tensor,
                grad: &Tensor,
            ) -> Result<($(impl_custom_op!(@grad $g)),+)> {
                let [$($g),+] = self.grads([$($a),+], res, grad)?;
                Ok(($($g),+))
            }
        }
    };
}

impl_custom_op!(CustomOp1: (s1, l1, a1, g1));
impl_custom_op!(CustomOp2: (s1, l1, a1, g1), (s2, l2, a2, g2));
impl_custom_op!(CustomOp3: (s1, l1, a1, g1), (s2, l2, a2, g2), (s3, l3, a3, g3));

/// `args`, made contiguous unless the kernel reads strides.
fn prepared<K: Kernel>(args: &[&Tensor]) -> Result<Vec<Tensor>> {
    args.iter()
        .map(|t| {
            if K::STRIDED {
                Ok((*t).clone())
            } else {
                t.contiguous()
            }
        })
        .collect()
}

/// Applies `kernel` to its 1 to 3 arguments, with its backward pass (candle's autograd).
pub(crate) fn apply<K: Kernel>(kernel: K, args: &[&Tensor]) -> Result<Tensor> {
    let op = Op(kernel);
    match prepared::<K>(args)?.as_slice() {
        [a] => a.apply_op1(op),
        [a, b] => a.apply_op2(b, op),
        [a, b, c] => a.apply_op3(b, c, op),
        other => bail!("{}: {} arguments (1 to 3)", op.0.name(), other.len()),
    }
}

/// Applies `kernel` to its 1 to 3 arguments without recording a backward pass (for the
/// kernels that compute gradients: candle detaches gradients anyway).
pub(crate) fn apply_no_bwd<K: Kernel>(kernel: K, args: &[&Tensor]) -> Result<Tensor> {
    let op = Op(kernel);
    match prepared::<K>(args)?.as_slice() {
        [a] => a.apply_op1_no_bwd(&op),
        [a, b] => a.apply_op2_no_bwd(b, &op),
        [a, b, c] => a.apply_op3_no_bwd(b, c, &op),
        other => bail!("{}: {} arguments (1 to 3)", op.0.name(), other.len()),
    }
}

/// Splits a flat `[n1 + n2 + ...]` tensor (a backward kernel's packed gradients) into
/// consecutive pieces of the given shapes.
pub(crate) fn unpack<const N: usize>(packed: &Tensor, shapes: [&Shape; N]) -> Result<[Tensor; N]> {
    let mut start = 0;
    let mut pieces = Vec::with_capacity(N);
    for shape in shapes {
        let n = shape.elem_count();
        pieces.push(packed.narrow(0, start, n)?.reshape(shape)?);
        start += n;
    }
    match pieces.try_into() {
        Ok(pieces) => Ok(pieces),
        Err(_) => unreachable!("one piece per shape"),
    }
}

/// Whether every tensor is f32 on the CPU (the custom-op fast path).
pub(crate) fn all_f32_cpu(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.dtype() == DType::F32 && t.device().is_cpu())
}

/// Errors unless every tensor is f32 on the CPU (for the kernels without a fallback).
pub(crate) fn require_f32_cpu(what: &str, ts: &[&Tensor]) -> Result<()> {
    for t in ts {
        if t.dtype() != DType::F32 || !t.device().is_cpu() {
            bail!(
                "{what}: CPU f32 tensors only, got {:?} on {:?}",
                t.dtype(),
                t.device().location()
            )
        }
    }
    Ok(())
}

/// Errors unless all tensors share one dtype.
pub(crate) fn same_dtype(op: &str, named: &[(&str, &Tensor)]) -> Result<()> {
    let first = named[0].1.dtype();
    if named.iter().any(|(_, t)| t.dtype() != first) {
        let list: Vec<String> = named
            .iter()
            .map(|(n, t)| format!("{n} {:?}", t.dtype()))
            .collect();
        bail!("{op}: inputs must share one dtype, got {}", list.join(", "))
    }
    Ok(())
}

/// Panics unless all `lens` are equal: the contract of the elementwise slice kernels.
#[inline(always)]
pub(crate) fn assert_same_len(what: &str, lens: &[usize]) {
    assert!(
        lens.windows(2).all(|p| p[0] == p[1]),
        "{what}: length mismatch"
    );
}

/// Which tensor a [`Pointwise`] backward reads next to the incoming gradient.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GradFrom {
    /// The op's input `x` (SiLU).
    Input,
    /// The op's output `y` (ReLU).
    Output,
}

/// An elementwise activation with one-pass kernels: forward `y = f(x)`, backward
/// `dx = grad(a, g)` with `a` the input or the output ([`GradFrom`]); both split over
/// threads by [`par_map`]. Differentiable once (its backward has no backward).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pointwise {
    pub forward_name: &'static str,
    pub grad_name: &'static str,
    pub forward: fn(&[f32], &mut [f32]),
    pub grad: fn(&[f32], &[f32], &mut [f32]),
    pub grad_from: GradFrom,
}

impl Pointwise {
    /// The kernel for f32 on the CPU (`x` made contiguous first), `fallback` (candle's own
    /// op) for other dtypes and devices.
    pub fn apply_or(self, x: &Tensor, fallback: fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        if all_f32_cpu(&[x]) {
            apply(self, &[x])
        } else {
            fallback(x)
        }
    }
}

impl Kernel for Pointwise {
    fn name(&self) -> &'static str {
        self.forward_name
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let x = args[0].f32(self.forward_name)?;
        let mut y = vec![0f32; x.len()];
        par_map(&mut y, |off, c| (self.forward)(&x[off..off + c.len()], c));
        Ok((y, args[0].shape().clone()))
    }

    fn backward(&self, args: &[&Tensor], res: &Tensor, grad: &Tensor) -> Result<Grads> {
        let a = match self.grad_from {
            GradFrom::Input => args[0],
            GradFrom::Output => res,
        };
        Ok(vec![Some(apply_no_bwd(PointwiseGrad(*self), &[a, grad])?)])
    }
}

/// `(a, g) -> dx`: the backward of a [`Pointwise`] (first order only).
struct PointwiseGrad(Pointwise);

impl Kernel for PointwiseGrad {
    fn name(&self) -> &'static str {
        self.0.grad_name
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let [a, g] = f32s(self.name(), args)?;
        if a.len() != g.len() {
            let what = match self.0.grad_from {
                GradFrom::Input => "input",
                GradFrom::Output => "output",
            };
            bail!(
                "{}: gradient shape {:?} for {what} {:?}",
                self.name(),
                args[1].shape(),
                args[0].shape()
            )
        }
        let mut dx = vec![0f32; a.len()];
        par_map(&mut dx, |off, c| {
            let n = c.len();
            (self.0.grad)(&a[off..off + n], &g[off..off + n], c)
        });
        Ok((dx, args[0].shape().clone()))
    }
}
