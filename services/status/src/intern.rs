//! One copy of each string many phones share (site, profile and edge ids, user agents).

use std::{collections::HashSet, sync::Arc};

/// Strings many phones share, kept once. Names nothing holds any more are dropped when
/// the set has doubled since the last sweep, so ever-changing user agents cannot grow it
/// without bound.
#[derive(Debug)]
pub(crate) struct Interner {
    set: HashSet<Arc<str>>,
    sweep_at: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Self {
            set: Default::default(),
            sweep_at: 1024,
        }
    }
}

impl Interner {
    /// The one copy of `s`, when the set has it (for readers sharing the set).
    pub(crate) fn find(&self, s: &str) -> Option<Arc<str>> {
        self.set.get(s).cloned()
    }

    /// The one copy of `s`.
    pub(crate) fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        if self.set.len() >= self.sweep_at {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.sweep_at = (self.set.len() * 2).max(1024);
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(a.clone());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_string() {
        let mut names = Interner::default();
        let a = names.get("edge-1");
        let b = names.get("edge-1");
        let c = names.get("edge-2");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(&*c, "edge-2");
        assert!(Arc::ptr_eq(&names.find("edge-1").unwrap(), &a));
        assert!(names.find("edge-3").is_none());
    }

    #[test]
    fn names_nothing_holds_are_swept() {
        let mut names = Interner::default();
        let kept = names.get("kept");
        for i in 0..10_000 {
            drop(names.get(&format!("ua-{i}")));
        }
        // Swept each time the set reached its mark: never above twice what is held.
        assert!(names.set.len() <= 1024, "{} names", names.set.len());
        assert!(Arc::ptr_eq(&kept, &names.get("kept")));
    }
}
