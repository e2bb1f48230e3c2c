//! Newtype keys of a worker's two slabs, so that a front's key is never taken for a
//! back's (or the other way round). A leaf: it depends on nothing.

/// A front (client connection) in the worker's slab; also its `mio::Token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrontKey(pub usize);

/// A back (Redis connection) in the worker's back pool; its token is offset by
/// `BackKey::TOKEN_BASE`, so the two never meet in `poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackKey(pub usize);

impl BackKey {
    /// Back connection tokens start here; front tokens are their slab keys, below it.
    pub const TOKEN_BASE: usize = 1 << 30;

    pub fn token(self) -> mio::Token {
        mio::Token(Self::TOKEN_BASE + self.0)
    }

    /// The back a token names, if it names one.
    pub fn of_token(t: mio::Token) -> Option<BackKey> {
        t.0.checked_sub(Self::TOKEN_BASE).map(BackKey)
    }
}

impl FrontKey {
    pub fn token(self) -> mio::Token {
        mio::Token(self.0)
    }
}
