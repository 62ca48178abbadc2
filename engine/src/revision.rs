//! Revisions: `{main, sub}` as etcd numbers them.
//!
//! Every write transaction takes the next `main` revision; each change inside it takes the
//! next `sub` (0, 1, 2, ...). Revisions order every change the store ever made.

use std::fmt;

/// A point in the store's history. Ordered by `main`, then `sub`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// The greatest revision with this main revision (for "everything at or below main").
    pub const fn max_of(main: i64) -> Revision {
        Revision { main, sub: i64::MAX }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_main_then_sub() {
        assert!(Revision::new(1, 5) < Revision::new(2, 0));
        assert!(Revision::new(2, 0) < Revision::new(2, 1));
        assert!(Revision::new(2, 1) < Revision::max_of(2));
        assert_eq!(Revision::new(3, 4).to_string(), "3_4");
    }
}
