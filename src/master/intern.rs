//! A reference-counted string interner: map names, game directories, versions and tags repeat across
//! thousands of servers, so each record stores a 4-byte [`Sym`] instead of the bytes.
//!
//! Strings are freed when their last server leaves, so a flood of unique names cannot grow the
//! table beyond what the listed servers hold (the table cap bounds it).

use std::collections::HashMap;
use std::sync::Arc;

/// An interned string; `Sym::NONE` is the empty / absent string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(pub u32);

impl Sym {
    pub const NONE: Sym = Sym(0);
}

#[derive(Debug, Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    refs: u32,
}

/// The interner of one shard.
#[derive(Debug, Default)]
pub struct Interner {
    ids: HashMap<Arc<[u8]>, u32>,
    /// `entries[id - 1]`; `None` marks a free id.
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
}

impl Interner {
    /// Takes one reference to `s`, interning it if new. The empty string is `Sym::NONE`.
    pub fn intern(&mut self, s: &[u8]) -> Sym {
        if s.is_empty() {
            return Sym::NONE;
        }
        if let Some(&id) = self.ids.get(s) {
            if let Some(Some(e)) = (id as usize)
                .checked_sub(1)
                .and_then(|i| self.entries.get_mut(i))
            {
                e.refs = e.refs.saturating_add(1);
            }
            return Sym(id);
        }
        let bytes: Arc<[u8]> = Arc::from(s);
        let entry = Some(Entry {
            bytes: bytes.clone(),
            refs: 1,
        });
        let free = self
            .free
            .pop()
            .and_then(|id| Some((id, (id as usize).checked_sub(1)?)));
        let id = match free.and_then(|(id, i)| Some((id, self.entries.get_mut(i)?))) {
            Some((id, slot)) => {
                *slot = entry;
                id
            }
            None => {
                self.entries.push(entry);
                u32::try_from(self.entries.len()).unwrap_or(u32::MAX)
            }
        };
        self.ids.insert(bytes, id);
        Sym(id)
    }

    /// Drops one reference; the string is freed with its last reference.
    pub fn release(&mut self, sym: Sym) {
        if sym == Sym::NONE {
            return;
        }
        let Some(slot) = (sym.0 as usize)
            .checked_sub(1)
            .and_then(|i| self.entries.get_mut(i))
        else {
            return;
        };
        let Some(e) = slot else { return };
        e.refs = e.refs.saturating_sub(1);
        if e.refs == 0 {
            self.ids.remove(&e.bytes);
            *slot = None;
            self.free.push(sym.0);
        }
    }

    /// The bytes of `sym` (empty for `NONE` or a freed id).
    pub fn get(&self, sym: Sym) -> &[u8] {
        self.shared(sym).map_or(&[][..], |a| &a[..])
    }

    fn shared(&self, sym: Sym) -> Option<&Arc<[u8]>> {
        let i = (sym.0 as usize).checked_sub(1)?;
        self.entries.get(i)?.as_ref().map(|e| &e.bytes)
    }

    /// Live strings.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// A read-only copy of the id → string table for a snapshot: one reference count per string,
    /// no byte copied.
    pub fn table(&self) -> SymTable {
        SymTable(
            self.entries
                .iter()
                .map(|e| e.as_ref().map(|e| e.bytes.clone()))
                .collect(),
        )
    }

    /// Heap bytes held (strings, their index and the table), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        // Each string's bytes plus the two counts of its `Arc` allocation.
        let strings: usize = self.ids.keys().map(|k| k.len().saturating_add(16)).sum();
        let ids = self
            .ids
            .capacity()
            .saturating_mul(std::mem::size_of::<(Arc<[u8]>, u32)>().saturating_add(1));
        strings
            .saturating_add(ids)
            .saturating_add(
                self.entries
                    .capacity()
                    .saturating_mul(std::mem::size_of::<Option<Entry>>()),
            )
            .saturating_add(self.free.capacity().saturating_mul(4))
    }
}

/// The strings of one snapshot, shared with the interner that made them.
#[derive(Debug, Default, Clone)]
pub struct SymTable(Vec<Option<Arc<[u8]>>>);

impl SymTable {
    pub fn get(&self, sym: Sym) -> &[u8] {
        (sym.0 as usize)
            .checked_sub(1)
            .and_then(|i| self.0.get(i))
            .and_then(|e| e.as_deref())
            .unwrap_or_default()
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
        let table = i.table();
        i.release(a);
        assert_eq!(i.get(a), b"de_dust", "one reference left");
        i.release(b);
        assert_eq!(i.get(a), b"", "freed");
        assert_eq!(table.get(a), b"de_dust", "a snapshot keeps its strings");
        assert_eq!(i.len(), 1);
        let d = i.intern(b"ctf_2fort");
        assert_eq!(d, a, "freed id reused");
        assert_eq!(i.get(c), b"cp_well");
    }
}
