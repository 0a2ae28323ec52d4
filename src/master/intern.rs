//! A reference-counted string interner: map names, game directories, versions and tags repeat across
//! thousands of servers, so each record stores a 4-byte [`Sym`] instead of the bytes.
//!
//! - **Freed with their last server**, so strings never outlive what is listed.
//! - **A bounded total** ([`Interner::new`]'s `budget`): each distinct string is charged its length
//!   plus [`OVERHEAD`] (what the table spends to hold it); a new string that would pass the budget
//!   is not stored — the record gets the empty string and the refusal is counted — so a million
//!   servers with every name unique and maximal cannot take memory past the budget.
//! - **Copy-on-write snapshots**: the id → string table lives in chunks of [`CHUNK`] shared by
//!   `Arc`; [`Interner::snapshot`] clones the chunk pointers (not the strings), and a later change
//!   copies only the chunk it touches. A list answering queries reads the snapshot while the shard
//!   keeps registering.

use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// An interned string; `Sym::NONE` is the empty / absent string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(pub u32);

impl Sym {
    pub const NONE: Sym = Sym(0);
}

/// Ids per copy-on-write chunk.
pub const CHUNK: usize = 256;
/// Bytes charged per distinct string besides its own: the `Arc` header and allocator rounding
/// (~24), its chunk slot (16), reference count (4) and index bucket (~5).
pub const OVERHEAD: usize = 48;

type Chunk = [Option<Arc<[u8]>>; CHUNK];

fn empty_chunk() -> Arc<Chunk> {
    Arc::new(std::array::from_fn(|_| None))
}

/// The interner of one shard.
#[derive(Debug)]
pub struct Interner {
    /// Id → bytes, in copy-on-write chunks (`chunks[(id-1) / CHUNK][(id-1) % CHUNK]`).
    chunks: Vec<Arc<Chunk>>,
    refs: Vec<u32>,
    /// Ids, found by hashing their bytes (held once, in `chunks`). Randomly keyed: the strings
    /// come from the network.
    index: HashTable<u32>,
    hasher: RandomState,
    free: Vec<u32>,
    /// Bytes charged (length + [`OVERHEAD`] per live string) and the most allowed.
    charged: usize,
    budget: usize,
    /// New strings not stored because the budget was spent.
    refused: u64,
}

impl Default for Interner {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

/// The bytes of `id` in `chunks`.
fn lookup(chunks: &[Arc<Chunk>], id: u32) -> Option<&Arc<[u8]>> {
    let i = (id as usize).checked_sub(1)?;
    chunks.get(i / CHUNK)?.get(i % CHUNK)?.as_ref()
}

impl Interner {
    /// An interner that holds at most `budget` charged bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            chunks: Vec::new(),
            refs: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
            free: Vec::new(),
            charged: 0,
            budget,
            refused: 0,
        }
    }

    fn find(&self, s: &[u8]) -> Option<u32> {
        let chunks = &self.chunks;
        self.index
            .find(self.hasher.hash_one(s), |&id| {
                lookup(chunks, id).is_some_and(|b| &**b == s)
            })
            .copied()
    }

    /// Takes one reference to `s`, interning it if new. The empty string is `Sym::NONE`; so is a
    /// new string the budget has no room for (counted in [`refused`](Self::refused)).
    pub fn intern(&mut self, s: &[u8]) -> Sym {
        if s.is_empty() {
            return Sym::NONE;
        }
        if let Some(id) = self.find(s) {
            if let Some(r) = (id as usize)
                .checked_sub(1)
                .and_then(|i| self.refs.get_mut(i))
            {
                *r = r.saturating_add(1);
            }
            return Sym(id);
        }
        let cost = s.len().saturating_add(OVERHEAD);
        if self.charged.saturating_add(cost) > self.budget {
            self.refused = self.refused.wrapping_add(1);
            return Sym::NONE;
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = u32::try_from(self.refs.len().saturating_add(1)).unwrap_or(u32::MAX);
                self.refs.push(0);
                if self.refs.len() > self.chunks.len().saturating_mul(CHUNK) {
                    self.chunks.push(empty_chunk());
                }
                id
            }
        };
        let i = (id as usize).saturating_sub(1);
        if let Some(c) = self.chunks.get_mut(i / CHUNK)
            && let Some(slot) = Arc::make_mut(c).get_mut(i % CHUNK)
        {
            *slot = Some(Arc::from(s));
        }
        if let Some(r) = self.refs.get_mut(i) {
            *r = 1;
        }
        self.charged = self.charged.saturating_add(cost);
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.index.insert_unique(hasher.hash_one(s), id, |&id| {
            lookup(chunks, id).map_or(0, |b| hasher.hash_one(&**b))
        });
        Sym(id)
    }

    /// Drops one reference; the string is freed with its last reference.
    pub fn release(&mut self, sym: Sym) {
        let Some(i) = (sym.0 as usize).checked_sub(1) else {
            return;
        };
        let Some(r) = self.refs.get_mut(i) else {
            return;
        };
        if *r == 0 {
            return;
        }
        *r = r.saturating_sub(1);
        if *r > 0 {
            return;
        }
        let Some(bytes) = lookup(&self.chunks, sym.0).cloned() else {
            return;
        };
        if let Ok(e) = self
            .index
            .find_entry(self.hasher.hash_one(&*bytes), |&id| id == sym.0)
        {
            e.remove();
        }
        if let Some(c) = self.chunks.get_mut(i / CHUNK)
            && let Some(slot) = Arc::make_mut(c).get_mut(i % CHUNK)
        {
            *slot = None;
        }
        self.charged = self
            .charged
            .saturating_sub(bytes.len().saturating_add(OVERHEAD));
        self.free.push(sym.0);
    }

    /// The bytes of `sym` (empty for `NONE` or a freed id).
    pub fn get(&self, sym: Sym) -> &[u8] {
        lookup(&self.chunks, sym.0).map_or(&[][..], |a| &a[..])
    }

    /// Live strings.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes charged against the budget now.
    pub fn charged(&self) -> usize {
        self.charged
    }

    /// New strings not stored for want of budget, since the interner was made.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// A read-only view of the strings as they are now: the chunk pointers, not the bytes.
    pub fn snapshot(&self) -> Strings {
        Strings(self.chunks.clone())
    }

    /// Heap bytes held: the strings (with allocator headers), the chunks, counts and index.
    pub fn heap_bytes(&self) -> usize {
        let strings = self.charged;
        strings
            .saturating_add(
                self.chunks
                    .len()
                    .saturating_mul(std::mem::size_of::<Chunk>()),
            )
            .saturating_add(self.refs.capacity().saturating_mul(4))
            .saturating_add(self.index.allocation_size())
            .saturating_add(self.free.capacity().saturating_mul(4))
    }
}

/// The strings of one snapshot, shared with the interner that made them (copy-on-write).
#[derive(Debug, Default, Clone)]
pub struct Strings(Vec<Arc<Chunk>>);

impl Strings {
    pub fn get(&self, sym: Sym) -> &[u8] {
        lookup(&self.0, sym.0).map_or(&[][..], |a| &a[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcounts_free_and_reuse_ids() {
        let mut i = Interner::default();
        let a = i.intern(b"de_dust");
        let b = i.intern(b"de_dust");
        assert_eq!(a, b);
        assert_eq!(i.intern(b""), Sym::NONE);
        let c = i.intern(b"cp_well");
        assert_ne!(a, c);
        let table = i.snapshot();
        i.release(a);
        assert_eq!(i.get(a), b"de_dust", "one reference left");
        i.release(b);
        assert_eq!(i.get(a), b"", "freed");
        assert_eq!(table.get(a), b"de_dust", "a snapshot keeps its strings");
        assert_eq!(i.len(), 1);
        let d = i.intern(b"ctf_2fort");
        assert_eq!(d, a, "freed id reused");
        assert_eq!(i.get(c), b"cp_well");
        assert_eq!(
            table.get(d),
            b"de_dust",
            "the snapshot did not see the reuse"
        );
    }

    #[test]
    fn the_budget_bounds_what_unique_strings_take() {
        // Room for 10 strings of 100 bytes (each charged 100 + OVERHEAD).
        let mut i = Interner::new(10 * (100 + OVERHEAD));
        let names: Vec<Vec<u8>> = (0..20u8).map(|n| vec![b'a' + n; 100]).collect();
        let syms: Vec<Sym> = names.iter().map(|n| i.intern(n)).collect();
        assert!(syms[..10].iter().all(|s| *s != Sym::NONE));
        assert!(
            syms[10..].iter().all(|s| *s == Sym::NONE),
            "over budget: not stored"
        );
        assert_eq!((i.refused(), i.charged()), (10, 10 * (100 + OVERHEAD)));
        // A string already held costs nothing more; freeing one makes room.
        assert_eq!(i.intern(&names[3]), syms[3]);
        i.release(syms[0]);
        assert!(i.intern(&names[15]) != Sym::NONE);
    }

    #[test]
    fn snapshots_share_chunks_until_a_change() {
        let mut i = Interner::default();
        for n in 0..1000u32 {
            i.intern(n.to_string().as_bytes());
        }
        let s1 = i.snapshot();
        let s2 = i.snapshot();
        assert!(s1.0.iter().zip(&s2.0).all(|(a, b)| Arc::ptr_eq(a, b)));
        i.intern(b"new");
        let s3 = i.snapshot();
        let copied =
            s1.0.iter()
                .zip(&s3.0)
                .filter(|(a, b)| !Arc::ptr_eq(a, b))
                .count();
        assert_eq!(copied, 1, "only the chunk written was copied");
    }
}
