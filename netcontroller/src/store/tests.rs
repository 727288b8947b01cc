//! Store tests: round trips, damaged files, names, and concurrent writers.

use std::collections::BTreeMap;
use std::fs;
use std::thread;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;
use crate::error::{ErrorKind, Kind};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Doc {
    name: String,
    n: u64,
}

fn doc(name: &str, n: u64) -> Doc {
    Doc {
        name: name.to_string(),
        n,
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("nested/network")).unwrap();
    (dir, store)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn open_creates_the_root() {
    let (_dir, store) = store();
    assert!(store.root().is_dir());
}

#[test]
fn documents_round_trip_sorted_by_id() {
    let (_dir, store) = store();
    store.put("networks", "b", &doc("bee", 2)).unwrap();
    store.put("networks", "a", &doc("ay", 1)).unwrap();
    store.put("endpoints", "a", &doc("other kind", 9)).unwrap();
    let loaded: Loaded<Doc> = store.load_all("networks").unwrap();
    assert_eq!(
        loaded.items,
        vec![
            ("a".to_string(), doc("ay", 1)),
            ("b".to_string(), doc("bee", 2))
        ]
    );
    assert!(loaded.problems.is_empty());
    assert_eq!(
        names_in(&store.root().join("networks")),
        ["a.json", "b.json"],
        "no temp file stays behind"
    );
}

#[test]
fn put_replaces_and_delete_removes() {
    let (_dir, store) = store();
    store.put("networks", "a", &doc("old", 1)).unwrap();
    store.put("networks", "a", &doc("new", 2)).unwrap();
    let loaded: Loaded<Doc> = store.load_all("networks").unwrap();
    assert_eq!(loaded.items, vec![("a".to_string(), doc("new", 2))]);
    store.delete("networks", "a").unwrap();
    store.delete("networks", "a").unwrap();
    store.delete("never-written", "a").unwrap();
    let loaded: Loaded<Doc> = store.load_all("networks").unwrap();
    assert!(loaded.items.is_empty());
}

#[test]
fn a_kind_never_written_loads_empty() {
    let (_dir, store) = store();
    let loaded: Loaded<Doc> = store.load_all("containers").unwrap();
    assert!(loaded.items.is_empty() && loaded.problems.is_empty());
}

#[test]
fn damaged_files_are_reported_and_skipped_while_the_rest_loads() {
    let (_dir, store) = store();
    for (id, n) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)] {
        store.put("networks", id, &doc(id, n)).unwrap();
    }
    let dir = store.root().join("networks");
    // Truncated half-way, as a torn write without rename would leave it.
    let b = fs::read(dir.join("b.json")).unwrap();
    fs::write(dir.join("b.json"), &b[..b.len() / 2]).unwrap();
    // Valid JSON of the wrong shape, and an empty file.
    fs::write(dir.join("c.json"), br#"{"name": 5}"#).unwrap();
    fs::write(dir.join("d.json"), b"").unwrap();
    // A write interrupted before its rename.
    let temp = dir.join(".e.json.tmp-00000000deadbeef");
    fs::write(&temp, br#"{"name": "e", "#).unwrap();
    // Something that is not ours.
    fs::write(dir.join("notes.txt"), b"hello").unwrap();

    let loaded: Loaded<Doc> = store.load_all("networks").unwrap();
    assert_eq!(loaded.items, vec![("a".to_string(), doc("a", 1))]);
    let problems: BTreeMap<String, String> = loaded
        .problems
        .iter()
        .map(|p| {
            (
                p.path.file_name().unwrap().to_string_lossy().into_owned(),
                p.reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        problems.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            ".e.json.tmp-00000000deadbeef",
            "b.json",
            "c.json",
            "d.json",
            "notes.txt"
        ]
    );
    assert!(
        problems["b.json"].starts_with("corrupt document, skipped: EOF"),
        "{}",
        problems["b.json"]
    );
    assert!(problems["c.json"].starts_with("corrupt document, skipped: invalid type"));
    assert_eq!(
        problems[".e.json.tmp-00000000deadbeef"],
        "leftover of an interrupted write, removed"
    );
    assert!(!temp.exists(), "the temp file is gone");
    assert!(
        dir.join("b.json").exists(),
        "a corrupt document is left for a human"
    );
    let shown = loaded
        .problems
        .iter()
        .find(|p| p.path.ends_with("b.json"))
        .unwrap()
        .to_string();
    assert!(
        shown.contains("networks/b.json: corrupt document"),
        "{shown}"
    );

    // The next load no longer sees the temp file.
    let again: Loaded<Doc> = store.load_all("networks").unwrap();
    assert_eq!(again.problems.len(), 4);
}

#[test]
fn names_that_could_escape_or_look_like_temp_files_are_refused() {
    let (_dir, store) = store();
    for bad in ["", "a/b", "..", "../etc", "a..b", ".hidden", "a\0b"] {
        let e = store.put("networks", bad, &doc("x", 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "id {bad:?}");
        assert_eq!(
            store.delete("networks", bad).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let e = store.put(bad, "id", &doc("x", 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "kind {bad:?}");
        assert!(store.load_all::<Doc>(bad).is_err());
    }
    let e = store.put("networks", "../x", &doc("x", 1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid store id '../x': must not contain '/'"
    );
    assert!(names_in(store.root()).is_empty(), "nothing was written");
}

#[test]
fn io_failures_are_system_errors() {
    let (_dir, store) = store();
    // A file where the kind's directory should be.
    fs::write(store.root().join("networks"), b"").unwrap();
    let e = store.put("networks", "a", &doc("a", 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::System);
    assert!(store.load_all::<Doc>("networks").is_err());
}

#[test]
fn concurrent_writers_never_tear_a_document() {
    let (_dir, store) = store();
    thread::scope(|s| {
        for t in 0..8u64 {
            let store = &store;
            s.spawn(move || {
                for i in 0..20u64 {
                    // Everyone rewrites "shared"; each also owns one id.
                    store
                        .put(
                            "networks",
                            "shared",
                            &doc(&"x".repeat((t * 50 + i) as usize), t),
                        )
                        .unwrap();
                    store
                        .put("networks", &format!("own{t}"), &doc("own", i))
                        .unwrap();
                }
            });
        }
    });
    let loaded: Loaded<Doc> = store.load_all("networks").unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert_eq!(loaded.items.len(), 9);
    for (id, d) in &loaded.items {
        if id == "shared" {
            // Whole: its length matches the writer and round it claims.
            assert!(d.name.len() as u64 >= d.n * 50 && (d.name.len() as u64) < d.n * 50 + 20);
        } else {
            assert_eq!(d.n, 19, "{id} holds its last write");
        }
    }
}

proptest! {
    // Every operation fsyncs; fewer cases keep the run short.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// After any sequence of puts and deletes, load_all returns exactly the
    /// last value written for every id still present.
    #[test]
    fn load_all_matches_the_last_writes(
        ops in prop::collection::vec(
            (prop::sample::select(vec!["a", "b", "c-1", "d.e", "f_g"]), prop::option::of(any::<u64>())),
            0..30,
        ),
    ) {
        let (_dir, store) = store();
        let mut model = BTreeMap::new();
        for (id, value) in ops {
            match value {
                Some(n) => {
                    store.put("k", id, &doc(id, n)).unwrap();
                    model.insert(id.to_string(), doc(id, n));
                }
                None => {
                    store.delete("k", id).unwrap();
                    model.remove(id);
                }
            }
        }
        let loaded: Loaded<Doc> = store.load_all("k").unwrap();
        prop_assert!(loaded.problems.is_empty());
        prop_assert_eq!(loaded.items, model.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
    send_sync::<StoreError>();
    send_sync::<Loaded<Doc>>();
}
