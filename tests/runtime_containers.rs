//! Containers through a real private containerd: run, wait, logs, kill,
//! delete, leftovers, supervision, coexistence.

mod runtime_support;

use std::time::Instant;

use berthd::container::logs::{LogOptions, LogReader, LogStream};
use berthd::container::runtime::TaskStatus;
use berthd::container::spec::{BindMount, SpecParams};
use netcontroller::error::{ErrorKind, Kind};
use nix::sys::signal::Signal;
use runtime_support::{cgroup_dirs, mounts_mentioning, unique, Env, Netns};

fn params(id: &str, script: &str) -> SpecParams {
    SpecParams {
        id: id.to_string(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        hostname: id.chars().take(12).collect(),
        ..Default::default()
    }
}

/// Deletes task and container and checks nothing of them is left.
async fn delete_and_check(env: &Env, id: &str) {
    let containerd = env.containerd();
    containerd.delete_task(id).await.unwrap();
    containerd.delete_container(id).await.unwrap();
    assert!(mounts_mentioning(&env.container_dir(id)).is_empty());
    assert!(mounts_mentioning(&env.bundle_dir(id)).is_empty());
    assert!(!containerd
        .list_tasks()
        .await
        .unwrap()
        .iter()
        .any(|t| t.id == id));
    assert!(!containerd
        .list_containers()
        .await
        .unwrap()
        .iter()
        .any(|c| c == id));
    assert_eq!(cgroup_dirs(id), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn run_wait_logs_delete() {
    let env = Env::new().await;
    let netns = Netns::new();
    let id = unique("run");
    let greeting = env.data_root.join("greeting");
    std::fs::write(&greeting, "hello from the host\n").unwrap();

    let mut p = params(
        &id,
        "echo out; echo err >&2; cat /etc/greeting; ls /sys/class/net; hostname; exit 3",
    );
    p.netns = Some(netns.path.clone());
    p.mounts.push(BindMount {
        source: greeting.clone(),
        destination: "/etc/greeting".into(),
        read_only: true,
    });
    let started = Instant::now();
    let capture = env.run(p).await;
    let exit = env.containerd().wait(&id).await.unwrap();
    println!("container ran in {:?}", started.elapsed());
    assert_eq!(exit.code, 3);
    assert!(exit.exited_at.is_some());
    // Waiting again on an exited task answers at once, the same.
    assert_eq!(env.containerd().wait(&id).await.unwrap().code, 3);
    let task = env.containerd().task(&id).await.unwrap();
    assert_eq!(task.status, TaskStatus::Stopped);
    assert_eq!(task.exit.unwrap().code, 3);

    capture.finish().await.unwrap();
    let raw = std::fs::read_to_string(env.log_path(&id)).unwrap();
    assert!(
        raw.contains(r#"{"log":"out\n","stream":"stdout","time":""#),
        "{raw}"
    );
    assert!(
        raw.contains(r#"{"log":"err\n","stream":"stderr","time":""#),
        "{raw}"
    );

    let mut reader = LogReader::open(&env.log_path(&id), LogOptions::default(), None)
        .await
        .unwrap();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    while let Some(e) = reader.next().await.unwrap() {
        let line = String::from_utf8(e.line).unwrap();
        match e.stream {
            LogStream::Stdout => stdout.push(line),
            LogStream::Stderr => stderr.push(line),
        }
    }
    // Only loopback: the container is in the test's network namespace.
    let hostname = format!("{}\n", &id[..12]);
    assert_eq!(
        stdout,
        ["out\n", "hello from the host\n", "lo\n", hostname.as_str()]
    );
    assert_eq!(stderr, ["err\n"]);

    delete_and_check(&env, &id).await;
    let again = env.containerd().delete_container(&id).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::NotFound, "{again}");
}

#[tokio::test]
async fn kill_with_sigterm_and_sigkill() {
    let env = Env::new().await;
    let netns = Netns::new();
    let containerd = env.containerd();

    // `sleep` as pid 1 has no SIGTERM handler: the kernel drops the signal,
    // as `docker stop` sees before it escalates to SIGKILL.
    let sleeper = unique("sleep");
    let mut p = params(&sleeper, "");
    p.args = vec!["sleep".into(), "100".into()];
    p.netns = Some(netns.path.clone());
    let sleeper_logs = env.run(p).await;
    let task = containerd.task(&sleeper).await.unwrap();
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(containerd.pids(&sleeper).await.unwrap(), vec![task.pid]);
    containerd
        .kill(&sleeper, Signal::SIGTERM, false)
        .await
        .unwrap();
    assert_eq!(
        containerd.task(&sleeper).await.unwrap().status,
        TaskStatus::Running
    );
    containerd
        .kill(&sleeper, Signal::SIGKILL, false)
        .await
        .unwrap();
    assert_eq!(containerd.wait(&sleeper).await.unwrap().code, 137);

    // A process that handles SIGTERM exits the way it chooses.
    let trapper = unique("trap");
    let mut p = params(&trapper, "trap 'echo bye; exit 7' TERM; sleep 100 & wait");
    p.netns = Some(netns.path.clone());
    let trapper_logs = env.run(p).await;
    // The trap must be installed before the signal: wait for the child sleep.
    while containerd.pids(&trapper).await.unwrap().len() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    containerd
        .kill(&trapper, Signal::SIGTERM, false)
        .await
        .unwrap();
    assert_eq!(containerd.wait(&trapper).await.unwrap().code, 7);

    sleeper_logs.finish().await.unwrap();
    trapper_logs.finish().await.unwrap();
    let log = std::fs::read_to_string(env.log_path(&trapper)).unwrap();
    assert!(log.contains(r#""log":"bye\n","stream":"stdout""#), "{log}");
    delete_and_check(&env, &sleeper).await;
    delete_and_check(&env, &trapper).await;
}

#[tokio::test]
async fn leftovers_of_a_crashed_daemon_are_removed() {
    let mut env = Env::new().await;
    let netns = Netns::new();
    let id = unique("left");
    let mut p = params(&id, "");
    p.args = vec!["sleep".into(), "100".into()];
    p.netns = Some(netns.path.clone());
    let capture = env.run(p).await;

    // containerd goes away; the task lives on in its shim.
    env.stop_containerd().await;
    env.restart_containerd().await;
    let tasks = env.containerd().list_tasks().await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (tasks[0].id.as_str(), tasks[0].status),
        (id.as_str(), TaskStatus::Running)
    );

    let removed = env.containerd().cleanup_leftovers().await.unwrap();
    assert_eq!(removed.tasks, vec![id.clone()]);
    assert_eq!(removed.containers, vec![id.clone()]);
    capture.finish().await.unwrap();
    assert!(env.containerd().list_tasks().await.unwrap().is_empty());
    assert!(env.containerd().list_containers().await.unwrap().is_empty());
    assert!(mounts_mentioning(&env.container_dir(&id)).is_empty());
    assert!(mounts_mentioning(&env.bundle_dir(&id)).is_empty());
    assert_eq!(cgroup_dirs(&id), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn containerd_is_restarted_when_it_dies() {
    let env = Env::new().await;
    let netns = Netns::new();
    let id = unique("restart");
    let mut p = params(&id, "");
    p.args = vec!["sleep".into(), "100".into()];
    p.netns = Some(netns.path.clone());
    let capture = env.run(p).await;
    let containerd = env.containerd();
    let waiting = containerd.wait(&id);
    tokio::pin!(waiting);

    let first = containerd.pid().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    let started = Instant::now();
    // Calls fail while it is down and work again once it is back; the
    // pending wait rides it out.
    loop {
        tokio::select! {
            exit = &mut waiting => panic!("wait ended while the task runs: {exit:?}"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
        if containerd.restarts() == 1 && containerd.version().await.is_ok() {
            break;
        }
    }
    println!("containerd back after {:?}", started.elapsed());
    assert_ne!(containerd.pid().unwrap(), first);
    // The task survived in its shim and is still ours to manage.
    assert_eq!(
        containerd.task(&id).await.unwrap().status,
        TaskStatus::Running
    );
    containerd.kill(&id, Signal::SIGKILL, true).await.unwrap();
    assert_eq!(waiting.await.unwrap().code, 137);
    capture.finish().await.unwrap();
    delete_and_check(&env, &id).await;
}

#[tokio::test]
async fn two_private_containerds_coexist() {
    let one = Env::new().await;
    let two = Env::new().await;
    assert_ne!(one.containerd().address(), two.containerd().address());
    assert!(one.containerd().version().await.is_ok());
    assert!(two.containerd().version().await.is_ok());

    let id = unique("two");
    let spec = berthd::container::spec::build_spec(&params(&id, "true")).unwrap();
    two.containerd().create_container(&id, &spec).await.unwrap();
    assert_eq!(
        two.containerd().list_containers().await.unwrap(),
        vec![id.clone()]
    );
    assert!(one.containerd().list_containers().await.unwrap().is_empty());
    two.containerd().delete_container(&id).await.unwrap();

    let pid = one.containerd().pid().unwrap();
    let mut one = one;
    one.stop_containerd().await;
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(two.containerd().version().await.is_ok());
}
