//! A reference-counted string interner: map names, game directories, versions and tags repeat across
//! thousands of servers, so each record stores a 4-byte [`Sym`] instead of the bytes.
//!
//! - **Compact**: the strings of [`CHUNK`] consecutive ids share one byte buffer, found by an
//!   8-byte span each, so a string costs its bytes plus [`OVERHEAD`] — no allocation of its own
//!   (hostnames are nearly all unique: at a million servers the difference is ~40 MB).
//! - **Freed with their last server**, so strings never outlive what is listed; a chunk whose
//!   freed bytes pass a quarter of its buffer is compacted.
//! - **A bounded total** ([`Interner::new`]'s `budget`): what the interner holds — every chunk's
//!   buffer capacity plus [`OVERHEAD`] per live string — never passes the budget by more than one
//!   string: a new string that would is not stored (the record gets the empty string and the
//!   refusal is counted), so a million servers with every name unique and maximal cannot take
//!   memory past it.
//! - **Copy-on-write snapshots**: chunks are shared by `Arc`; [`Interner::snapshot`] clones the
//!   chunk pointers (not the strings), and a later change copies (and compacts) only the chunk it
//!   touches. A list answering queries reads the snapshot while the shard keeps registering.

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
/// Bytes held per live string besides its own: its span (8), reference count (4) and index bucket
/// (4-byte id and a control byte, at most half-empty: ~10).
pub const OVERHEAD: usize = 22;
/// A chunk's buffer grows by a quarter (at least this much): little slack, few copies.
const MIN_GROWTH: usize = 64;

/// Where an id's bytes are in its chunk's buffer; `len == 0`: no string (the empty string is
/// never interned).
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    len: u32,
}

#[derive(Debug)]
struct Chunk {
    spans: [Span; CHUNK],
    bytes: Vec<u8>,
    /// Bytes in `bytes` no span points to (freed strings).
    garbage: usize,
}

impl Default for Chunk {
    fn default() -> Self {
        Chunk {
            spans: [Span::default(); CHUNK],
            bytes: Vec::new(),
            garbage: 0,
        }
    }
}

impl Clone for Chunk {
    /// A copy holding only the live strings (a copy-on-write copy compacts on the way).
    fn clone(&self) -> Self {
        let mut c = Chunk {
            spans: [Span::default(); CHUNK],
            bytes: Vec::with_capacity(self.bytes.len().saturating_sub(self.garbage)),
            garbage: 0,
        };
        for (to, from) in c.spans.iter_mut().zip(&self.spans) {
            if let Some(b) = self.slice(*from) {
                *to = Span {
                    start: u32::try_from(c.bytes.len()).unwrap_or(u32::MAX),
                    len: from.len,
                };
                c.bytes.extend_from_slice(b);
            }
        }
        c
    }
}

impl Chunk {
    fn slice(&self, s: Span) -> Option<&[u8]> {
        if s.len == 0 {
            return None;
        }
        let start = s.start as usize;
        self.bytes.get(start..start.checked_add(s.len as usize)?)
    }

    fn get(&self, i: usize) -> Option<&[u8]> {
        self.slice(*self.spans.get(i)?)
    }

    /// Stores `s` as entry `i` (which is empty).
    fn put(&mut self, i: usize, s: &[u8]) {
        let (Ok(start), Ok(len)) = (u32::try_from(self.bytes.len()), u32::try_from(s.len())) else {
            return;
        };
        if self.bytes.capacity().saturating_sub(self.bytes.len()) < s.len() && self.garbage > 0 {
            *self = self.clone(); // reuse freed bytes before growing
        }
        if self.bytes.capacity().saturating_sub(self.bytes.len()) < s.len() {
            let more = (self.bytes.len() / 4).max(MIN_GROWTH).max(s.len());
            self.bytes.reserve_exact(more);
        }
        self.bytes.extend_from_slice(s);
        if let Some(span) = self.spans.get_mut(i) {
            *span = Span { start, len };
        }
    }

    /// Empties entry `i`; compacts when a quarter of the buffer is garbage.
    fn clear(&mut self, i: usize) {
        let Some(span) = self.spans.get_mut(i) else {
            return;
        };
        self.garbage = self.garbage.saturating_add(span.len as usize);
        *span = Span::default();
        if self.garbage.saturating_mul(4) > self.bytes.len() {
            *self = self.clone();
        }
    }
}

/// The interner of one shard.
#[derive(Debug)]
pub struct Interner {
    /// Id → bytes, in copy-on-write chunks (`chunks[(id-1) / CHUNK]`, entry `(id-1) % CHUNK`).
    chunks: Vec<Arc<Chunk>>,
    refs: Vec<u32>,
    /// Ids, found by hashing their bytes (held once, in `chunks`). Randomly keyed: the strings
    /// come from the network.
    index: HashTable<u32>,
    hasher: RandomState,
    free: Vec<u32>,
    /// Bytes held (every chunk buffer's capacity + [`OVERHEAD`] per live string) and the most
    /// allowed.
    held: usize,
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
fn lookup(chunks: &[Arc<Chunk>], id: u32) -> Option<&[u8]> {
    let i = (id as usize).checked_sub(1)?;
    chunks.get(i / CHUNK)?.get(i % CHUNK)
}

impl Interner {
    /// An interner that holds at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Self::with_capacity(budget, 0)
    }

    /// An interner with index room for `strings` before it first grows.
    pub fn with_capacity(budget: usize, strings: usize) -> Self {
        Self {
            chunks: Vec::new(),
            refs: Vec::new(),
            index: HashTable::with_capacity(strings),
            hasher: RandomState::new(),
            free: Vec::new(),
            held: 0,
            budget,
            refused: 0,
        }
    }

    fn find(&self, s: &[u8], hash: u64) -> Option<u32> {
        let chunks = &self.chunks;
        self.index
            .find(hash, |&id| lookup(chunks, id) == Some(s))
            .copied()
    }

    /// Runs `f` on the chunk of id index `i` (copying it first if a snapshot shares it), keeping
    /// `held` true to the chunk's buffer.
    fn edit(&mut self, i: usize, f: impl FnOnce(&mut Chunk)) {
        let Some(c) = self.chunks.get_mut(i / CHUNK) else {
            return;
        };
        let before = c.bytes.capacity();
        let c = Arc::make_mut(c);
        f(c);
        self.held = self
            .held
            .saturating_sub(before)
            .saturating_add(c.bytes.capacity());
    }

    /// Takes one reference to `s`, interning it if new. The empty string is `Sym::NONE`; so is a
    /// new string the budget has no room for (counted in [`refused`](Self::refused)).
    pub fn intern(&mut self, s: &[u8]) -> Sym {
        if s.is_empty() {
            return Sym::NONE;
        }
        // Hashed once: for the look-up and, when new, the insert.
        let hash = self.hasher.hash_one(s);
        if let Some(id) = self.find(s, hash) {
            if let Some(r) = (id as usize)
                .checked_sub(1)
                .and_then(|i| self.refs.get_mut(i))
            {
                *r = r.saturating_add(1);
            }
            return Sym(id);
        }
        // The chunk the string goes to gives its freed bytes back before it grows.
        let next = match self.free.last() {
            Some(&id) => (id as usize).saturating_sub(1),
            None => self.refs.len(),
        };
        let reclaimable = self.chunks.get(next / CHUNK).map_or(0, |c| c.garbage);
        let cost = s.len().saturating_add(OVERHEAD);
        if self.held.saturating_sub(reclaimable).saturating_add(cost) > self.budget
            || u32::try_from(s.len()).is_err()
        {
            self.refused = self.refused.wrapping_add(1);
            return Sym::NONE;
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = u32::try_from(self.refs.len().saturating_add(1)).unwrap_or(u32::MAX);
                self.refs.push(0);
                if self.refs.len() > self.chunks.len().saturating_mul(CHUNK) {
                    self.chunks.push(Arc::default());
                }
                id
            }
        };
        let i = (id as usize).saturating_sub(1);
        self.edit(i, |c| c.put(i % CHUNK, s));
        if let Some(r) = self.refs.get_mut(i) {
            *r = 1;
        }
        self.held = self.held.saturating_add(OVERHEAD);
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.index.insert_unique(hash, id, |&id| {
            lookup(chunks, id).map_or(0, |b| hasher.hash_one(b))
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
        let Some(hash) = lookup(&self.chunks, sym.0).map(|b| self.hasher.hash_one(b)) else {
            return;
        };
        if let Ok(e) = self.index.find_entry(hash, |&id| id == sym.0) {
            e.remove();
        }
        self.edit(i, |c| c.clear(i % CHUNK));
        self.held = self.held.saturating_sub(OVERHEAD);
        self.free.push(sym.0);
    }

    /// The bytes of `sym` (empty for `NONE` or a freed id).
    pub fn get(&self, sym: Sym) -> &[u8] {
        lookup(&self.chunks, sym.0).unwrap_or_default()
    }

    /// Live strings.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes held against the budget now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// New strings not stored for want of budget, since the interner was made.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// A read-only view of the strings as they are now: the chunk pointers, not the bytes.
    pub fn snapshot(&self) -> Strings {
        Strings(self.chunks.clone())
    }

    /// Heap bytes held: the buffers, the spans, counts, free ids and index.
    pub fn heap_bytes(&self) -> usize {
        let buffers: usize = self.chunks.iter().map(|c| c.bytes.capacity()).sum();
        buffers
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
        lookup(&self.0, sym.0).unwrap_or_default()
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
        // Room for about 10 strings of 100 bytes (each 100 + OVERHEAD, plus buffer slack).
        let budget = 10 * (100 + OVERHEAD) + MIN_GROWTH;
        let mut i = Interner::new(budget);
        let names: Vec<Vec<u8>> = (0..20u8).map(|n| vec![b'a' + n; 100]).collect();
        let syms: Vec<Sym> = names.iter().map(|n| i.intern(n)).collect();
        let stored = syms.iter().take_while(|s| **s != Sym::NONE).count();
        assert!((8..=10).contains(&stored), "{stored}");
        assert!(
            syms[stored..].iter().all(|s| *s == Sym::NONE),
            "over budget: not stored"
        );
        assert_eq!(i.refused(), (20 - stored) as u64);
        assert!(i.held() <= budget + 100 + OVERHEAD, "{} {budget}", i.held());
        assert!(i.heap_bytes() < budget + std::mem::size_of::<Chunk>() + 4096);
        // A string already held costs nothing more; freeing one makes room.
        assert_eq!(i.intern(&names[3]), syms[3]);
        i.release(syms[0]);
        assert!(i.intern(&names[15]) != Sym::NONE);
        assert_eq!(i.get(syms[3]), &names[3][..]);
    }

    #[test]
    fn freed_bytes_are_compacted_away() {
        let mut i = Interner::default();
        let names: Vec<Vec<u8>> = (0..CHUNK as u32)
            .map(|n| format!("host-{n:08}").into_bytes())
            .collect();
        let syms: Vec<Sym> = names.iter().map(|n| i.intern(n)).collect();
        let full = i.held();
        // Free three quarters: the buffer is compacted on the way, and what is left reads back.
        for s in syms.iter().skip(CHUNK / 4) {
            i.release(*s);
        }
        assert!(i.held() < full / 2, "{} of {full}", i.held());
        for (s, n) in syms.iter().zip(&names).take(CHUNK / 4) {
            assert_eq!(i.get(*s), &n[..]);
        }
        // Churn in place (a refresh renaming servers) holds steady.
        for round in 0..50u32 {
            let s = i.intern(format!("churn-{round:08}").as_bytes());
            i.release(s);
        }
        assert!(i.held() < full / 2, "{} of {full}", i.held());
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
