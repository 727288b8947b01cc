//! The image endpoints with the real docker CLI: import, load, images,
//! inspect, tag, rmi, and that images persist across a restart.

mod common;

use std::io::Write;

use common::rootfs::{add_dir, add_file};
use common::{busybox_tar, Daemon};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// The short id `docker images` prints: 12 hex digits.
fn short(id: &str) -> &str {
    &id["sha256:".len().."sha256:".len() + 12]
}

/// `docker image inspect NAME` parsed (one image).
fn inspect(d: &Daemon, name: &str) -> Value {
    let out = d.docker_ok(&["image", "inspect", name]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// A small rootfs tarball with one file, distinct from busybox's.
fn small_tar(content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    add_dir(&mut b, "etc", 0o755);
    add_file(&mut b, "etc/motd", 0o644, content);
    b.into_inner().unwrap()
}

/// Image names the daemon lists (`docker images` repository:tag column).
fn listed(d: &Daemon, args: &[&str]) -> Vec<String> {
    let mut full = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
    full.extend_from_slice(args);
    let mut names: Vec<String> = lines(&d.docker_ok(&full))
        .into_iter()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// A `docker save` archive as docker 25+ writes it: blobs under
/// `blobs/sha256/`, manifest.json naming the config and layers, with the
/// OCI index beside it. Returns the archive and the image id.
fn save_archive(layer: &[u8], repo_tags: &[&str]) -> (Vec<u8>, String) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-03-01T12:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "Labels": {"made-by": "test"}},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
        "history": [
            {"created": "2024-03-01T12:00:00Z", "created_by": "ADD rootfs.tar /"},
            {"created": "2024-03-01T12:00:00Z", "created_by": "CMD [\"sh\"]", "empty_layer": true}
        ]
    }))
    .unwrap();
    let config_id = sha256(&config);
    let blob = |id: &str| format!("blobs/sha256/{}", id.trim_start_matches("sha256:"));
    let manifest = serde_json::to_vec(&json!([{
        "Config": blob(&config_id),
        "RepoTags": repo_tags,
        "Layers": [blob(&sha256(layer))]
    }]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    add_dir(&mut b, "blobs", 0o755);
    add_dir(&mut b, "blobs/sha256", 0o755);
    add_file(&mut b, &blob(&sha256(layer)), 0o644, layer);
    add_file(&mut b, &blob(&config_id), 0o644, &config);
    add_file(
        &mut b,
        "oci-layout",
        0o644,
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    add_file(
        &mut b,
        "index.json",
        0o644,
        br#"{"schemaVersion":2,"manifests":[]}"#,
    );
    add_file(&mut b, "manifest.json", 0o644, &manifest);
    (b.into_inner().unwrap(), config_id)
}

/// Go's name for this machine's architecture, as image configs carry it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn import_inspect_and_list() {
    let d = Daemon::start();
    let id = d.import_busybox();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    let table = d.docker_ok(&["images"]);
    let row = lines(&table)
        .into_iter()
        .find(|l| l.starts_with("busybox "))
        .unwrap_or_else(|| panic!("no busybox row:\n{table}"));
    assert!(row.contains("latest") && row.contains(short(&id)), "{row}");
    assert_eq!(lines(&d.docker_ok(&["images", "-q"])), [short(&id)]);
    assert_eq!(
        d.docker_ok(&["images", "--no-trunc", "--format", "{{.ID}}"])
            .trim(),
        id
    );

    let img = inspect(&d, "busybox");
    assert_eq!(img["Id"], id.as_str());
    assert_eq!(img["RepoTags"], json!(["busybox:latest"]));
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["Architecture"], go_arch());
    assert_eq!(img["Comment"], "Imported from -");
    assert_eq!(img["RootFS"]["Type"], "layers");
    assert_eq!(img["RootFS"]["Layers"], json!([sha256(&busybox_tar())]));
    let busybox_size = std::fs::metadata("/bin/busybox").unwrap().len();
    assert!(img["Size"].as_u64().unwrap() >= busybox_size, "{img}");
    let created = chrono::DateTime::parse_from_rfc3339(img["Created"].as_str().unwrap())
        .expect("Created is RFC 3339");
    let age = chrono::Utc::now().signed_duration_since(created);
    assert!(age.num_seconds() >= 0 && age.num_hours() < 1, "{created}");
    let out = d.docker_ok(&["history", "--format", "{{.ID}} {{.Comment}}", "busybox"]);
    assert_eq!(lines(&out), [format!("{} Imported from -", short(&id))]);
    // The same image by id, id prefix and full name.
    for name in [&id[..], &id[7..19], "docker.io/library/busybox:latest"] {
        assert_eq!(inspect(&d, name)["Id"], id.as_str(), "{name}");
    }

    // A gzip-compressed rootfs with a message, named repo:tag; a third
    // image without a name.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&small_tar(b"hello\n")).unwrap();
    let out = d.docker_stdin(
        &[
            "import",
            "-m",
            "a message",
            "--change",
            r#"CMD ["httpd", "-f"]"#,
            "--change",
            "ENV GREETING=hello",
            "--change",
            "EXPOSE 80",
            "-",
            "localhost:5000/team/app:v1",
        ],
        &gz.finish().unwrap(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let app = inspect(&d, "localhost:5000/team/app:v1");
    assert_eq!(app["Comment"], "a message");
    assert_eq!(app["Config"]["Cmd"], json!(["httpd", "-f"]));
    assert_eq!(app["Config"]["Env"], json!(["GREETING=hello"]));
    assert_eq!(app["Config"]["ExposedPorts"], json!({"80/tcp": {}}));
    assert_eq!(
        app["RootFS"]["Layers"],
        json!([sha256(&small_tar(b"hello\n"))])
    );
    let out = d.docker_stdin(&["import", "-"], &small_tar(b"nameless\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let nameless = String::from_utf8_lossy(&out.stdout).trim().to_string();

    assert_eq!(
        listed(&d, &[]),
        [
            "<none>:<none>",
            "busybox:latest",
            "localhost:5000/team/app:v1"
        ]
    );
    assert_eq!(
        listed(&d, &["--filter", "dangling=true"]),
        ["<none>:<none>"]
    );
    assert_eq!(
        listed(&d, &["--filter", "dangling=false"]),
        ["busybox:latest", "localhost:5000/team/app:v1"]
    );
    assert_eq!(listed(&d, &["busybox"]), ["busybox:latest"]);
    assert_eq!(
        listed(&d, &["--filter", "reference=localhost:5000/*/*"]),
        ["localhost:5000/team/app:v1"]
    );
    assert_eq!(
        listed(&d, &["--filter", "reference=*:v1"]),
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&d, &["--filter", &format!("since={}", short(&id))]),
        ["<none>:<none>", "localhost:5000/team/app:v1"]
    );
    assert_eq!(
        listed(&d, &["--filter", &format!("before={nameless}")]),
        ["busybox:latest", "localhost:5000/team/app:v1"]
    );
    assert_eq!(
        d.docker_ok(&["info", "--format", "{{.Images}}"]).trim(),
        "3"
    );

    // The API answers dockerd's shapes and errors.
    let list = d.get("/images/json").json();
    let untagged = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["Id"] == nameless.as_str())
        .unwrap();
    assert_eq!(untagged["RepoTags"], json!([]));
    assert!(untagged.get("VirtualSize").is_none(), "{untagged}");
    let old = d.get("/v1.41/images/json?filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D");
    assert_eq!(old.json()[0]["RepoTags"], json!(["<none>:<none>"]));
    assert_eq!(old.json()[0]["VirtualSize"], old.json()[0]["Size"]);
    let current = d.get("/images/busybox/json").json();
    for gone in ["VirtualSize", "Container", "ContainerConfig"] {
        assert!(current.get(gone).is_none(), "{gone} in {current}");
    }
    let old = d.get("/v1.43/images/busybox/json").json();
    assert_eq!(old["VirtualSize"], old["Size"]);
    assert_eq!(old["Container"], "");
    let bad = d.get("/images/json?filters=%7B%22color%22%3A%5B%22red%22%5D%7D");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["message"], "invalid filter 'color'");
    let missing = d.get("/images/nope/json");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["message"], "No such image: nope:latest");
    let out = d.docker(&["image", "inspect", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("No such image"), "{}", stderr(&out));

    // Pruning removes the untagged image, then (-a) every unused one.
    let out = d.docker_ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {nameless}")), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(
        listed(&d, &[]),
        ["busybox:latest", "localhost:5000/team/app:v1"]
    );
    let out = d.docker_ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: busybox:latest"), "{out}");
    assert!(out.contains(&format!("deleted: {id}")), "{out}");
    assert!(listed(&d, &[]).is_empty());
}

#[test]
fn tag_and_rmi() {
    let d = Daemon::start();
    let id = d.import_busybox();
    d.docker_ok(&["tag", "busybox", "registry:5000/team/bb:v1"]);
    d.docker_ok(&["tag", &id[7..19], "other"]);
    assert_eq!(
        listed(&d, &[]),
        ["busybox:latest", "other:latest", "registry:5000/team/bb:v1"]
    );
    assert_eq!(inspect(&d, "registry:5000/team/bb:v1")["Id"], id.as_str());
    let img = inspect(&d, "other");
    assert_eq!(
        img["RepoTags"],
        json!(["busybox:latest", "other:latest", "registry:5000/team/bb:v1"])
    );

    // Tagging needs a known source and a valid name.
    let out = d.docker(&["tag", "nope", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("No such image: nope:latest"),
        "{}",
        stderr(&out)
    );
    let r = d.request("POST", "/images/busybox/tag?repo=Bad%20Name", None);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.request("POST", "/images/busybox/tag?repo=ok&tag=v2", None);
    assert_eq!(r.status, 201);
    assert!(r.body.is_empty());

    // Removing a name that other names share only untags.
    let out = d.docker_ok(&["rmi", "registry:5000/team/bb:v1"]);
    assert_eq!(lines(&out), ["Untagged: registry:5000/team/bb:v1"]);
    // An id with several names needs force.
    let out = d.docker(&["rmi", &id[7..19]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("must be forced) - image is referenced in multiple repositories"),
        "{}",
        stderr(&out)
    );
    assert_eq!(listed(&d, &[]).len(), 3);
    let out = d.docker_ok(&["rmi", "-f", &id[7..19]]);
    assert_eq!(
        lines(&out),
        [
            "Untagged: busybox:latest",
            "Untagged: ok:v2",
            "Untagged: other:latest",
            &format!("Deleted: {id}"),
        ]
    );
    assert!(listed(&d, &[]).is_empty());
    assert_eq!(
        d.docker_ok(&["info", "--format", "{{.Images}}"]).trim(),
        "0"
    );
    let hex = id.trim_start_matches("sha256:");
    assert!(!d.paths.data_root.join("image").join(hex).exists());

    // The last name of an image deletes it.
    let id = d.import_busybox();
    let out = d.docker_ok(&["rmi", "busybox"]);
    assert_eq!(
        lines(&out),
        ["Untagged: busybox:latest", &format!("Deleted: {id}")]
    );

    let out = d.docker(&["rmi", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Error response from daemon: No such image: nope:latest"),
        "{}",
        stderr(&out)
    );
    let r = d.delete("/images/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No such image: nope:latest");

    // Each change was announced on /events, as dockerd does.
    let until = chrono::Utc::now().timestamp() + 1;
    let events = d.docker_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until.to_string(),
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    let seen = lines(&events);
    assert!(
        seen.contains(&"tag registry:5000/team/bb:v1")
            && seen.contains(&"untag registry:5000/team/bb:v1"),
        "{events}"
    );
    let import = format!("import {id}");
    let delete = format!("delete {id}");
    assert_eq!(
        seen[seen.len() - 4..],
        [
            import.as_str(),
            "tag busybox:latest",
            "untag busybox:latest",
            delete.as_str()
        ],
        "{events}"
    );
}

#[test]
fn load_a_docker_save_archive() {
    let d = Daemon::start();
    let layer = busybox_tar();
    let (archive, id) = save_archive(&layer, &["loaded:v1", "localhost:5000/loaded:v1"]);
    let out = d.docker_stdin(&["load"], &archive);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        lines(&stdout),
        [
            "Loaded image: loaded:v1",
            "Loaded image: localhost:5000/loaded:v1"
        ]
    );
    let img = inspect(&d, "loaded:v1");
    assert_eq!(img["Id"], id.as_str());
    assert_eq!(img["Config"]["Cmd"], json!(["sh"]));
    assert_eq!(img["Config"]["Labels"]["made-by"], "test");
    assert_eq!(img["Created"], "2024-03-01T12:00:00Z");
    assert_eq!(img["RootFS"]["Layers"], json!([sha256(&layer)]));
    assert_eq!(
        listed(&d, &["--filter", "label=made-by=test"]),
        ["loaded:v1", "localhost:5000/loaded:v1"]
    );
    assert!(listed(&d, &["--filter", "label=made-by=other"]).is_empty());
    let history = d.get("/images/loaded:v1/history").json();
    let layer_size = std::fs::metadata("/bin/busybox").unwrap().len();
    assert_eq!(history[0]["Id"], id.as_str());
    assert_eq!(
        history[0]["Tags"],
        json!(["loaded:v1", "localhost:5000/loaded:v1"])
    );
    assert_eq!(history[0]["CreatedBy"], "CMD [\"sh\"]");
    assert_eq!(history[0]["Size"], 0);
    assert_eq!(history[0]["Created"], 1_709_294_400);
    assert_eq!(history[1]["Id"], "<missing>");
    assert_eq!(history[1]["Tags"], Value::Null);
    assert_eq!(history[1]["CreatedBy"], "ADD rootfs.tar /");
    assert!(
        history[1]["Size"].as_u64().unwrap() > layer_size,
        "{history}"
    );
    let out = d.docker_ok(&["history", "--format", "{{.CreatedBy}}", "loaded:v1"]);
    assert_eq!(lines(&out), ["CMD [\"sh\"]", "ADD rootfs.tar /"]);

    // An archive without names loads an untagged image.
    let (archive, id) = save_archive(&small_tar(b"x\n"), &[]);
    let r = d.request_raw(
        "POST",
        "/images/load?quiet=1",
        Some("application/x-tar"),
        &archive,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        format!("{{\"stream\":\"Loaded image ID: {id}\\n\"}}\n")
    );
    assert_eq!(
        d.docker_ok(&["info", "--format", "{{.Images}}"]).trim(),
        "2"
    );
}

#[test]
fn images_survive_a_restart() {
    let mut d = Daemon::start();
    let id = d.import_busybox();
    d.docker_ok(&["tag", "busybox", "kept:v1"]);
    let before = inspect(&d, "kept:v1");
    d.restart();
    assert_eq!(listed(&d, &[]), ["busybox:latest", "kept:v1"]);
    let after = inspect(&d, "kept:v1");
    assert_eq!(after, before);
    assert_eq!(after["Id"], id.as_str());
    assert_eq!(
        d.docker_ok(&["info", "--format", "{{.Images}}"]).trim(),
        "1"
    );
}

#[test]
fn bad_uploads_are_refused_and_change_nothing() {
    let d = Daemon::start();
    // Large enough that the client is still sending when the answer comes.
    let garbage = b"this is not a tarball, not at all; really not".repeat(400_000);

    let r = d.request_raw(
        "POST",
        "/images/create?fromSrc=-&repo=junk",
        Some("application/x-tar"),
        &garbage,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid image archive"),
        "{}",
        r.text()
    );
    let out = d.docker_stdin(&["import", "-", "junk"], &garbage);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid image archive"),
        "{}",
        stderr(&out)
    );

    let r = d.request_raw(
        "POST",
        "/images/create?fromSrc=-&repo=Bad%20Name",
        Some("application/x-tar"),
        &busybox_tar(),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    let out = d.docker_stdin(
        &["import", "--change", "RUN true", "-", "x"],
        &busybox_tar(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("RUN is not a valid change command"),
        "{}",
        stderr(&out)
    );

    let out = d.docker_stdin(&["load"], &garbage);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid image archive"),
        "{}",
        stderr(&out)
    );
    let r = d.request_raw("POST", "/images/load", Some("application/x-tar"), &garbage);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.request_raw(
        "POST",
        "/images/load",
        Some("application/x-tar"),
        &busybox_tar(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("manifest.json"), "{}", r.text());

    // Pulling is refused with a message saying what to do instead.
    let r = d.request_raw(
        "POST",
        "/images/create?fromImage=busybox&tag=latest",
        None,
        b"",
    );
    assert_eq!(r.status, 501, "{}", r.text());
    let out = d.docker(&["pull", "busybox"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("pull is not supported by berthd"),
        "{}",
        stderr(&out)
    );

    assert!(d.get("/images/json").json().as_array().unwrap().is_empty());
    assert_eq!(
        d.docker_ok(&["info", "--format", "{{.Images}}"]).trim(),
        "0"
    );
    let image_dir = d.paths.data_root.join("image");
    let tmp: Vec<_> = std::fs::read_dir(image_dir.join("tmp"))
        .map(|r| r.collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
    let dirs: Vec<_> = std::fs::read_dir(&image_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.len() == 64)
        .collect();
    assert!(dirs.is_empty(), "{dirs:?}");

    // The daemon still works.
    d.import_busybox();
}
