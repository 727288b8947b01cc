//! The image store with real tarballs: docker import and docker load
//! archives, lookups, names and removal.

mod runtime_support;

use std::io::{Cursor, Write};

use berthd::image::{DeleteItem, ImageStore};
use netcontroller::error::{ErrorKind, Kind};
use runtime_support::busybox_tar;
use runtime_support::rootfs::{add_dir, add_file};
use sha2::{Digest, Sha256};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn tmp_store_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-img-")
        .tempdir()
        .unwrap()
}

#[tokio::test]
async fn import_lookup_tag_and_remove() {
    let dir = tmp_store_dir();
    let root = dir.path().join("image");
    let store = ImageStore::open(&root).await.unwrap();
    let tar = busybox_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let image = store
        .import(Cursor::new(gz.finish().unwrap()), Some("busybox"), None)
        .await
        .unwrap();

    // The id is the digest of the stored config; its diff id that of the
    // uncompressed tar, as dockerd computes them.
    let hex = image.id.strip_prefix("sha256:").unwrap();
    let config = std::fs::read(root.join(hex).join("config.json")).unwrap();
    assert_eq!(image.id, sha256(&config));
    assert_eq!(image.config.rootfs.diff_ids, vec![sha256(&tar)]);
    assert_eq!(image.rootfs, store.rootfs_path(&image.id).unwrap());
    assert_eq!(
        store.rootfs_path("../../etc").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(image.rootfs.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(image.rootfs.join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );
    let busybox_size = std::fs::metadata("/bin/busybox").unwrap().len();
    assert!(image.size >= busybox_size, "size {}", image.size);

    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        &image.id,
        &hex[..12],
        hex,
    ] {
        assert_eq!(store.get(name).unwrap().id, image.id, "{name}");
    }
    assert_eq!(store.get("nope").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        store.get("busybox:other").unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let summary = serde_json::to_value(image.summary()).unwrap();
    assert_eq!(summary["Id"], image.id.as_str());
    assert_eq!(summary["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(summary["Size"], image.size);
    let inspect = serde_json::to_value(image.inspect()).unwrap();
    assert_eq!(inspect["RootFS"]["Type"], "layers");
    assert_eq!(
        inspect["RootFS"]["Layers"],
        serde_json::json!([sha256(&tar)])
    );
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Comment"], "Imported from -");
    assert_eq!(inspect["Config"]["Cmd"], serde_json::Value::Null);

    store.tag("busybox", "mybox", Some("1")).await.unwrap();
    assert_eq!(
        store.get(&image.id).unwrap().repo_tags,
        vec!["busybox:latest", "mybox:1"]
    );

    // Names and images survive a reopen.
    let reopened = ImageStore::open(&root).await.unwrap();
    assert_eq!(reopened.get("mybox:1").unwrap().id, image.id);
    assert_eq!(reopened.list().len(), 1);
    drop(reopened);

    // By id with two names: refused unless forced.
    let err = store.remove(hex, false, |_| false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // One name of two goes even while a container uses the image.
    assert_eq!(
        store.remove("busybox", false, |_| true).await.unwrap(),
        vec![DeleteItem::Untagged("busybox:latest".into())]
    );
    // The last name of an image in use: refused, and forced only untags.
    let err = store.remove("mybox:1", false, |_| true).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(
        store.remove("mybox:1", true, |_| true).await.unwrap(),
        vec![DeleteItem::Untagged("mybox:1".into())]
    );
    assert!(image.rootfs.is_dir());
    assert!(store.get(&image.id).unwrap().repo_tags.is_empty());
    // Unused and unnamed: deleted, directory and all.
    assert_eq!(
        store
            .remove(&image.id, false, |id| id != image.id)
            .await
            .unwrap(),
        vec![DeleteItem::Deleted(image.id.clone())]
    );
    assert!(!root.join(hex).exists());
    assert!(store.list().is_empty());
    assert!(!root.join("tmp").read_dir().unwrap().any(|_| true));
}

#[tokio::test]
async fn import_refuses_bad_input_without_leftovers() {
    let dir = tmp_store_dir();
    let root = dir.path().join("image");
    let store = ImageStore::open(&root).await.unwrap();
    let err = store
        .import(Cursor::new(busybox_tar()), Some("Bad Name"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = store
        .import(
            Cursor::new(b"this is not a tarball, not at all; really not".repeat(20)),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(store.list().is_empty());
    let leftovers: Vec<_> = root.join("tmp").read_dir().unwrap().collect();
    assert!(leftovers.is_empty());
}

/// A `docker save` archive: two layers (the second gzip-compressed, with
/// whiteouts), a config naming their diff ids, manifest.json last as
/// docker writes it.
fn save_archive(corrupt_diff_id: bool) -> (Vec<u8>, String) {
    let base = busybox_tar();
    let mut b = tar::Builder::new(Vec::new());
    add_dir(&mut b, "etc/old", 0o755);
    add_file(&mut b, "etc/old/a", 0o644, b"a");
    add_file(&mut b, "etc/old/b", 0o644, b"b");
    add_file(&mut b, "tmp/gone", 0o644, b"gone");
    let lower_extra = b.into_inner().unwrap();
    // Base layer = busybox + the extra files, as one tar.
    let mut lower = base[..base.len() - 1024].to_vec();
    lower.extend_from_slice(&lower_extra);

    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, "tmp/.wh.gone", 0o644, b"");
    add_dir(&mut b, "etc/old", 0o755);
    add_file(&mut b, "etc/old/.wh..wh..opq", 0o644, b"");
    add_file(&mut b, "etc/old/c", 0o644, b"c");
    add_file(&mut b, "etc/motd", 0o644, b"loaded\n");
    let upper = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&upper).unwrap();
    let upper_gz = gz.finish().unwrap();

    let upper_id = if corrupt_diff_id {
        sha256(b"other")
    } else {
        sha256(&upper)
    };
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-03-01T12:00:00.5Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "Labels": {"made-by": "test"}},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&lower), upper_id]},
        "history": [{"created": "2024-03-01T12:00:00Z"}]
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", sha256(&config).trim_start_matches("sha256:"));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["loaded:v1", "localhost:5000/team/loaded:v1"],
        "Layers": ["l1/layer.tar", "l2/layer.tar"]
    }]))
    .unwrap();

    let mut b = tar::Builder::new(Vec::new());
    add_dir(&mut b, "l1", 0o755);
    add_file(&mut b, "l1/layer.tar", 0o644, &lower);
    add_dir(&mut b, "l2", 0o755);
    add_file(&mut b, "l2/layer.tar", 0o644, &upper_gz);
    add_file(&mut b, &config_name, 0o644, &config);
    add_file(&mut b, "manifest.json", 0o644, &manifest);
    (b.into_inner().unwrap(), sha256(&config))
}

#[tokio::test]
async fn load_docker_save_archive() {
    let dir = tmp_store_dir();
    let root = dir.path().join("image");
    let store = ImageStore::open(&root).await.unwrap();
    let (archive, config_id) = save_archive(false);
    let loaded = store.load(Cursor::new(archive)).await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, config_id);
    assert_eq!(
        loaded[0].tags,
        vec!["loaded:v1", "localhost:5000/team/loaded:v1"]
    );

    let image = store.get("loaded:v1").unwrap();
    assert_eq!(image.id, config_id);
    let rootfs = &image.rootfs;
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(std::fs::read(rootfs.join("etc/motd")).unwrap(), b"loaded\n");
    assert!(!rootfs.join("tmp/gone").exists());
    assert!(!rootfs.join("tmp/.wh.gone").exists());
    let mut old: Vec<String> = std::fs::read_dir(rootfs.join("etc/old"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    old.sort();
    assert_eq!(old, ["c"]);

    let inspect = serde_json::to_value(image.inspect()).unwrap();
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(inspect["Config"]["Labels"]["made-by"], "test");
    assert_eq!(inspect["Created"], "2024-03-01T12:00:00.5Z");
    assert_eq!(inspect["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(image.summary().created, 1_709_294_400);

    // Loading the same archive again only renames.
    let (archive, _) = save_archive(false);
    assert_eq!(
        store.load(Cursor::new(archive)).await.unwrap()[0].id,
        config_id
    );
    assert_eq!(store.list().len(), 1);
}

#[tokio::test]
async fn load_refuses_a_layer_that_does_not_match_its_config() {
    let dir = tmp_store_dir();
    let root = dir.path().join("image");
    let store = ImageStore::open(&root).await.unwrap();
    let (archive, _) = save_archive(true);
    let err = store.load(Cursor::new(archive)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(store.list().is_empty());
    assert!(store.get("loaded:v1").is_err());
    assert!(!root.join("tmp").read_dir().unwrap().any(|_| true));

    let err = store.load(Cursor::new(busybox_tar())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}
