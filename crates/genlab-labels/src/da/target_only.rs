//! Target only: the classifier trained on the target's own labels (its pool, which the
//! adapting methods see unlabelled), the upper bound of unsupervised adaptation (Ganin et
//! al. 2016, arXiv:1505.07818: "train on target" in its tables).

use super::{check_none, Labels, MethodEntry, NoSettings};

pub const ENTRY: MethodEntry = MethodEntry {
    name: "target-only",
    paper: "Ganin et al. 2016, arXiv:1505.07818 (the upper bound)",
    description: "the target's own labels (not available in the real setting): the upper bound",
    defaults: || serde_json::to_value(NoSettings::default()).expect("config serialises"),
    labels: Labels::Target,
    build: None,
    check: check_none,
};
