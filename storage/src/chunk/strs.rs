//! String column values as a dictionary and one key per slot, the form a string block is stored
//! in: decoding a block costs one allocation per distinct value, not one per row, and scans hand
//! the dictionary on to Arrow.

use std::sync::Arc;

/// Distinct values looked up by a linear scan before a new one is added; past that, a value
/// not equal to the previous slot's is appended (duplicate entries are allowed and harmless:
/// encoding and scans key by value).
const SCAN_LIMIT: usize = 16;

/// A string column: `keys[i]` indexes `dict`. A null slot holds key 0 (validity lives beside
/// the values, in [`super::Column`]); it may point past an empty dictionary, so read slots
/// through [`StrValues::get`].
#[derive(Debug, Clone, Default)]
pub(crate) struct StrValues {
    dict: Arc<Vec<Arc<str>>>,
    keys: Vec<u32>,
}

impl PartialEq for StrValues {
    /// Equal when every slot holds the same text, whatever the dictionaries look like.
    fn eq(&self, other: &StrValues) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.get(i) == other.get(i))
    }
}

impl StrValues {
    /// Values from a decoded dictionary and keys (every key in range).
    pub(crate) fn from_parts(dict: Vec<Arc<str>>, keys: Vec<u32>) -> StrValues {
        StrValues {
            dict: Arc::new(dict),
            keys,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The text of slot `i` (`None` past the end or for a null slot over an empty dictionary).
    pub(crate) fn get(&self, i: usize) -> Option<&Arc<str>> {
        self.keys.get(i).and_then(|&k| self.dict.get(k as usize))
    }

    /// The dictionary the keys index.
    pub(crate) fn dict(&self) -> &Arc<Vec<Arc<str>>> {
        &self.dict
    }

    /// One key per slot.
    pub(crate) fn keys(&self) -> &[u32] {
        &self.keys
    }

    fn key_of(&mut self, s: &Arc<str>) -> u32 {
        if let Some(&last) = self.keys.last()
            && self.dict.get(last as usize) == Some(s)
        {
            return last;
        }
        if self.dict.len() <= SCAN_LIMIT
            && let Some(p) = self.dict.iter().position(|d| Arc::ptr_eq(d, s) || d == s)
        {
            return p as u32;
        }
        // Copies the dictionary only if a slice still shares it.
        let dict = Arc::make_mut(&mut self.dict);
        dict.push(Arc::clone(s));
        (dict.len() - 1) as u32
    }

    pub(crate) fn push(&mut self, s: Arc<str>) {
        let k = self.key_of(&s);
        self.keys.push(k);
    }

    pub(crate) fn push_null(&mut self) {
        self.keys.push(0);
    }

    /// Appends `src`'s slot `i` (a null slot if `i` is out of range).
    pub(crate) fn push_from(&mut self, src: &StrValues, i: usize) {
        if Arc::ptr_eq(&self.dict, &src.dict) {
            self.keys.push(src.keys.get(i).copied().unwrap_or(0));
            return;
        }
        match src.get(i) {
            Some(s) => {
                let s = Arc::clone(s);
                self.push(s);
            }
            None => self.push_null(),
        }
    }

    /// Overwrites slot `i` with `src`'s slot `j`.
    pub(crate) fn set_from(&mut self, i: usize, src: &StrValues, j: usize) {
        let Some(s) = src.get(j).cloned() else {
            return;
        };
        let k = self.key_of(&s);
        if let Some(slot) = self.keys.get_mut(i) {
            *slot = k;
        }
    }

    pub(crate) fn truncate(&mut self, n: usize) {
        self.keys.truncate(n);
    }

    /// Slots `lo..hi`, sharing the dictionary.
    pub(crate) fn slice(&self, lo: usize, hi: usize) -> StrValues {
        StrValues {
            dict: Arc::clone(&self.dict),
            keys: self.keys.get(lo..hi).unwrap_or_default().to_vec(),
        }
    }

    /// The slots whose `keep` is set, sharing the dictionary.
    pub(crate) fn filter(&self, keep: &[bool]) -> StrValues {
        StrValues {
            dict: Arc::clone(&self.dict),
            keys: super::kept(&self.keys, keep),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn slots_read_back_as_pushed(picks in prop::collection::vec(0usize..40, 0..300)) {
            let names: Vec<Arc<str>> = (0..40).map(|i| Arc::from(format!("s{i}"))).collect();
            let mut v = StrValues::default();
            for &p in &picks {
                v.push(Arc::clone(&names[p]));
            }
            prop_assert_eq!(v.len(), picks.len());
            for (i, &p) in picks.iter().enumerate() {
                prop_assert_eq!(v.get(i), Some(&names[p]));
            }
            let mut copy = StrValues::default();
            for i in 0..v.len() {
                copy.push_from(&v, i);
            }
            prop_assert_eq!(&copy, &v);
            let mid = picks.len() / 2;
            let s = v.slice(mid, picks.len());
            for i in 0..s.len() {
                prop_assert_eq!(s.get(i), v.get(mid + i));
            }
        }
    }

    #[test]
    fn low_cardinality_keeps_one_entry_per_value() {
        let mut v = StrValues::default();
        for i in 0..1000 {
            v.push(Arc::from(["idle", "moving", "fault"][i % 3]));
        }
        assert_eq!(v.dict().len(), 3);
        v.push_null();
        assert_eq!(v.get(1000).map(|s| &**s), Some("idle"));
    }
}
