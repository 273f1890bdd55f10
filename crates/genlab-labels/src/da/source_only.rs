//! Source only: the classifier trained on the source's labels and applied to the target
//! unchanged, the lower reference every adaptation method must beat (Ganin et al. 2016,
//! arXiv:1505.07818: "source only" in its tables).

use super::{check_none, Labels, MethodEntry, NoSettings};

pub const ENTRY: MethodEntry = MethodEntry {
    name: "source-only",
    paper: "Ganin et al. 2016, arXiv:1505.07818 (the lower bound)",
    description: "the source's labels alone, no adaptation",
    defaults: || serde_json::to_value(NoSettings::default()).expect("config serialises"),
    labels: Labels::Source,
    build: None,
    check: check_none,
};
