//! A subscription trie: topic filters split into levels, so routing one topic name costs a walk
//! down its levels instead of a match against every filter (MQTT 5.0 §4.7).
//!
//! Each node holds the subscriptions whose filter ends there, the subscriptions of `<node>/#`,
//! a child per literal level and one for `+`. Matching follows the literal child and the `+`
//! child at every level and collects `#` subscriptions on the way, so `a/#` also matches `a`
//! (§4.7.1.2). A name that starts with `$` is not matched by a filter whose first level is a
//! wildcard (§4.7.2). The trie is generic over the subscriber key `K` (one entry per key and
//! filter; inserting again replaces the value, as a repeated SUBSCRIBE replaces the options).

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
struct Node<K, V> {
    /// Subscriptions whose filter ends at this node.
    exact: HashMap<K, V>,
    /// Subscriptions of `<this node>/#`.
    multi: HashMap<K, V>,
    /// Literal child levels (a fast seeded hash: every routed message looks up each level).
    children: HashMap<Box<str>, Node<K, V>, foldhash::fast::RandomState>,
    /// The `+` child.
    plus: Option<Box<Node<K, V>>>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            exact: HashMap::new(),
            multi: HashMap::new(),
            children: HashMap::default(),
            plus: None,
        }
    }
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.multi.is_empty()
            && self.children.is_empty()
            && self.plus.is_none()
    }
}

/// Topic filters → subscribers, matched by topic name.
#[derive(Debug)]
pub struct TopicTrie<K, V> {
    root: Node<K, V>,
    len: usize,
}

impl<K, V> Default for TopicTrie<K, V> {
    fn default() -> Self {
        TopicTrie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K: Eq + Hash + Clone, V> TopicTrie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (filter, key) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `key`'s subscription to the (valid) `filter`; returns the value it replaces.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                let old = node.multi.insert(key, value);
                self.len += usize::from(old.is_none());
                return old;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        let old = node.exact.insert(key, value);
        self.len += usize::from(old.is_none());
        old
    }

    /// Removes `key`'s subscription to `filter`; prunes nodes left empty.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, key);
        self.len -= usize::from(removed.is_some());
        removed
    }

    /// The value of `key`'s subscription to exactly `filter`.
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let mut node = &self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return node.multi.get(key);
            }
            node = if level == "+" {
                node.plus.as_deref()?
            } else {
                node.children.get(level)?
            };
        }
        node.exact.get(key)
    }

    /// Calls `f` for every subscription whose filter matches the topic `name`. A key subscribed
    /// through several matching filters is reported once per filter (the broker merges them:
    /// MQTT 5.0 §3.3.4 overlapping subscriptions).
    pub fn for_each_match(&self, name: &str, mut f: impl FnMut(&K, &V)) {
        let dollar = name.starts_with('$');
        walk(&self.root, name.split('/'), 0, dollar, &mut f);
    }

    /// Every entry as (filter, key, value), for listing and inspection (the broker persists
    /// subscriptions with each session, not from here).
    pub fn entries(&self) -> Vec<(String, &K, &V)> {
        let mut out = Vec::with_capacity(self.len);
        collect(&self.root, &mut String::new(), &mut out);
        out
    }
}

fn walk<K, V>(
    node: &Node<K, V>,
    mut levels: std::str::Split<'_, char>,
    depth: usize,
    dollar: bool,
    f: &mut impl FnMut(&K, &V),
) {
    let wildcard_ok = !(depth == 0 && dollar);
    if wildcard_ok {
        for (k, v) in &node.multi {
            f(k, v);
        }
    }
    let Some(level) = levels.next() else {
        for (k, v) in &node.exact {
            f(k, v);
        }
        return;
    };
    if let Some(child) = node.children.get(level) {
        walk(child, levels.clone(), depth + 1, dollar, f);
    }
    if wildcard_ok && let Some(plus) = &node.plus {
        walk(plus, levels, depth + 1, dollar, f);
    }
}

fn remove_at<K: Eq + Hash, V>(node: &mut Node<K, V>, levels: &[&str], key: &K) -> Option<V> {
    match levels {
        [] => node.exact.remove(key),
        ["#"] => node.multi.remove(key),
        [level, rest @ ..] => {
            if *level == "+" {
                let child = node.plus.as_deref_mut()?;
                let removed = remove_at(child, rest, key);
                if child.is_empty() {
                    node.plus = None;
                }
                removed
            } else {
                let child = node.children.get_mut(*level)?;
                let removed = remove_at(child, rest, key);
                if child.is_empty() {
                    node.children.remove(*level);
                }
                removed
            }
        }
    }
}

fn collect<'a, K, V>(
    node: &'a Node<K, V>,
    prefix: &mut String,
    out: &mut Vec<(String, &'a K, &'a V)>,
) {
    // `prefix` is the filter so far including a trailing '/' (empty at the root).
    let here = prefix.strip_suffix('/').unwrap_or(prefix).to_owned();
    if !prefix.is_empty() {
        for (k, v) in &node.exact {
            out.push((here.clone(), k, v));
        }
    }
    for (k, v) in &node.multi {
        out.push((format!("{prefix}#"), k, v));
    }
    let mut visit = |level: &str, child: &'a Node<K, V>, prefix: &mut String| {
        let len = prefix.len();
        prefix.push_str(level);
        prefix.push('/');
        collect(child, prefix, out);
        prefix.truncate(len);
    };
    for (level, child) in &node.children {
        visit(level, child, prefix);
    }
    if let Some(plus) = &node.plus {
        visit("+", plus, prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic;
    use proptest::prelude::*;

    fn matching(t: &TopicTrie<u32, ()>, name: &str) -> Vec<u32> {
        let mut v = Vec::new();
        t.for_each_match(name, |k, _| v.push(*k));
        v.sort_unstable();
        v
    }

    #[test]
    fn spec_examples() {
        // MQTT 5.0 §4.7.1.2 and §4.7.1.3, and §4.7.2 for `$` topics.
        let mut t = TopicTrie::new();
        t.insert("sport/tennis/player1/#", 1, ());
        t.insert("sport/#", 2, ());
        t.insert("#", 3, ());
        t.insert("sport/tennis/+", 4, ());
        t.insert("+", 5, ());
        t.insert("+/+", 6, ());
        t.insert("/+", 7, ());
        t.insert("+/monitor/Clients", 8, ());
        t.insert("$SYS/#", 9, ());
        t.insert("$SYS/monitor/+", 10, ());
        assert_eq!(matching(&t, "sport/tennis/player1"), [1, 2, 3, 4]);
        assert_eq!(matching(&t, "sport/tennis/player1/ranking"), [1, 2, 3]);
        assert_eq!(
            matching(&t, "sport/tennis/player1/score/wimbledon"),
            [1, 2, 3]
        );
        assert_eq!(matching(&t, "sport"), [2, 3, 5]);
        assert_eq!(matching(&t, "sport/"), [2, 3, 6]);
        assert_eq!(matching(&t, "/finance"), [3, 6, 7]);
        assert_eq!(matching(&t, "$SYS/monitor/Clients"), [9, 10]);
        assert_eq!(matching(&t, "$SYS"), [9]);
        assert_eq!(t.len(), 10);
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut t = TopicTrie::new();
        assert_eq!(t.insert("a/+/c", 1, 'x'), None);
        assert_eq!(t.insert("a/+/c", 1, 'y'), Some('x'));
        assert_eq!(t.insert("a/#", 2, 'z'), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("a/+/c", &1), Some(&'y'));
        assert_eq!(t.remove("a/+/c", &2), None);
        assert_eq!(t.remove("a/+/c", &1), Some('y'));
        assert_eq!(t.remove("a/#", &2), Some('z'));
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "empty nodes are pruned");
    }

    #[test]
    fn entries_give_back_the_filters() {
        let mut t = TopicTrie::new();
        for (i, f) in ["a/b", "a/+", "#", "a/#", "+/x/#", "/", "a//b"]
            .iter()
            .enumerate()
        {
            t.insert(f, i, ());
        }
        let mut got: Vec<(String, usize)> =
            t.entries().into_iter().map(|(f, k, _)| (f, *k)).collect();
        got.sort();
        let mut want: Vec<(String, usize)> = ["a/b", "a/+", "#", "a/#", "+/x/#", "/", "a//b"]
            .iter()
            .enumerate()
            .map(|(i, f)| (f.to_string(), i))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just(String::new()),
            Just("$s".to_string()),
            Just("é".to_string()),
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|v| v.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 0..4),
            any::<bool>(),
        )
            .prop_map(|(mut v, hash)| {
                if hash || v.is_empty() {
                    v.push("#".to_string());
                }
                let f = v.join("/");
                if f.is_empty() { "#".to_string() } else { f }
            })
    }

    proptest! {
        #[test]
        fn trie_agrees_with_the_matcher(
            filters in prop::collection::vec(filter(), 1..20),
            names in prop::collection::vec(name(), 1..20),
        ) {
            let mut t = TopicTrie::new();
            for (i, f) in filters.iter().enumerate() {
                prop_assert!(topic::validate_filter(f).is_ok(), "{f}");
                t.insert(f, i as u32, ());
            }
            for n in &names {
                let want: Vec<u32> = filters
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| topic::matches(f, n))
                    .map(|(i, _)| i as u32)
                    .collect();
                prop_assert_eq!(matching(&t, n), want, "name {}", n);
            }
            for (i, f) in filters.iter().enumerate() {
                t.remove(f, &(i as u32));
            }
            prop_assert!(t.is_empty());
            prop_assert!(t.root.is_empty());
        }
    }
}
