//! containerd as dockerd uses it: a private, supervised containerd (or one
//! given with `--containerd`), and containers and tasks managed through its
//! gRPC API in a namespace of our own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use containerd_client::services::v1::{
    container::Runtime, containers_client::ContainersClient, tasks_client::TasksClient,
    version_client::VersionClient, Container, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteTaskRequest, GetContainerRequest, GetRequest, KillRequest,
    ListContainersRequest, ListPidsRequest, ListTasksRequest, StartRequest, WaitRequest,
};
use containerd_client::types::v1::Status;
use containerd_client::types::Mount;
use netcontroller::error::{ErrorKind, Kind};
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;
use tonic::transport::Channel;
use tonic::{Code, Request};

use super::rootfs::OverlayRootfs;
use super::supervisor::{ChildCommand, Supervisor};
use super::{cgroup, spec};

/// The containerd namespace all our containers and tasks live in.
pub const NAMESPACE: &str = "berth";
/// The shim containerd runs our tasks with.
pub const RUNTIME: &str = "io.containerd.runc.v2";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// How long a freshly spawned containerd may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long containerd gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `wait` keeps retrying while containerd is being restarted.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting containerd: {0}")]
    Spawn(std::io::Error),
    #[error("containerd at {} did not answer within {waited:?} (log: {})", address.display(), log.display())]
    NotReady {
        address: PathBuf,
        waited: Duration,
        log: PathBuf,
    },
    #[error("connecting to containerd at {}: {source}", address.display())]
    Connect {
        address: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("containerd {op} {id}: {message}")]
    Rpc {
        op: &'static str,
        id: String,
        code: Code,
        message: String,
    },
    #[error("task {0} has stdout or stderr but not both")]
    PartialIo(String),
    #[error("encoding the OCI spec of {id}: {source}")]
    SpecEncode {
        id: String,
        source: serde_json::Error,
    },
    #[error("removing the cgroup of {id}: {source}")]
    Cgroup { id: String, source: std::io::Error },
}

impl Kind for RuntimeError {
    fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::Rpc { code, .. } => match code {
                Code::NotFound => ErrorKind::NotFound,
                Code::AlreadyExists | Code::FailedPrecondition => ErrorKind::Conflict,
                Code::InvalidArgument => ErrorKind::InvalidArgument,
                Code::Unavailable | Code::DeadlineExceeded => ErrorKind::Unavailable,
                _ => ErrorKind::System,
            },
            RuntimeError::NotReady { .. } | RuntimeError::Connect { .. } => ErrorKind::Unavailable,
            RuntimeError::PartialIo(_) => ErrorKind::InvalidArgument,
            _ => ErrorKind::System,
        }
    }
}

impl RuntimeError {
    fn rpc(op: &'static str, id: &str, status: tonic::Status) -> RuntimeError {
        RuntimeError::Rpc {
            op,
            id: id.to_string(),
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// The standard streams of a task, as FIFO (or file) paths on the host.
/// stdout and stderr come together: containerd 1.6's shim mishandles a task
/// that has only one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskIo {
    pub stdin: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
}

/// How a task's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskExit {
    /// Exit code; 128 + signal number when killed by a signal.
    pub code: u32,
    pub exited_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Unknown,
    Created,
    Running,
    Stopped,
    Paused,
    Pausing,
}

impl From<i32> for TaskStatus {
    fn from(raw: i32) -> TaskStatus {
        match Status::try_from(raw) {
            Ok(Status::Created) => TaskStatus::Created,
            Ok(Status::Running) => TaskStatus::Running,
            Ok(Status::Stopped) => TaskStatus::Stopped,
            Ok(Status::Paused) => TaskStatus::Paused,
            Ok(Status::Pausing) => TaskStatus::Pausing,
            _ => TaskStatus::Unknown,
        }
    }
}

/// A task as containerd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: String,
    pub pid: u32,
    pub status: TaskStatus,
    /// Set once the task has stopped.
    pub exit: Option<TaskExit>,
}

/// What `cleanup_leftovers` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub tasks: Vec<String>,
    pub containers: Vec<String>,
}

/// A connection to containerd, and the containerd itself when it is ours.
/// Dropping it stops a private containerd as `shutdown` does, blocking the
/// thread for up to a few seconds; prefer `shutdown`.
pub struct Containerd {
    channel: Channel,
    address: PathBuf,
    /// Taken out by `shutdown`.
    supervisor: std::sync::Mutex<Option<Supervisor>>,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containerd")
            .field("address", &self.address)
            .field("private", &self.lock_supervisor().is_some())
            .finish()
    }
}

fn with_ns<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(NAMESPACE),
    );
    req
}

fn timestamp(ts: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let ts = ts?;
    // containerd reports the zero time for "not exited".
    if ts.seconds <= 0 {
        return None;
    }
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
}

fn io_path(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Containerd {
    /// Starts and supervises a containerd of our own: root
    /// `<data-root>/containerd`, state and socket under
    /// `<exec-root>/containerd`, CRI disabled so several can coexist. Returns
    /// once it answers on its socket.
    pub async fn start_private(data_root: &Path, exec_root: &Path) -> Result<Containerd> {
        let root = data_root.join("containerd");
        let state = exec_root.join("containerd");
        for dir in [&root, &state] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| RuntimeError::Io {
                    path: dir.clone(),
                    source,
                })?;
        }
        let address = state.join("containerd.sock");
        let config = state.join("containerd.toml");
        let log = state.join("containerd.log");
        tokio::fs::write(&config, private_config(&root, &state, &address))
            .await
            .map_err(|source| RuntimeError::Io {
                path: config.clone(),
                source,
            })?;

        let started = Instant::now();
        let cmd = ChildCommand {
            binary: PathBuf::from("containerd"),
            args: vec!["--config".into(), config.to_string_lossy().into_owned()],
            log: log.clone(),
            pidfile: state.join("containerd.pid"),
        };
        let supervisor = tokio::task::spawn_blocking(move || Supervisor::start(cmd))
            .await
            .map_err(|e| RuntimeError::Spawn(std::io::Error::other(e)))?
            .map_err(RuntimeError::Spawn)?;
        let channel = match connect_when_ready(&address, &supervisor, &log).await {
            Ok(channel) => channel,
            Err(e) => {
                let mut supervisor = supervisor;
                let _ =
                    tokio::task::spawn_blocking(move || supervisor.stop_blocking(STOP_GRACE)).await;
                return Err(e);
            }
        };
        let containerd = Containerd {
            channel,
            address: address.clone(),
            supervisor: std::sync::Mutex::new(Some(supervisor)),
        };
        tracing::info!(address = %address.display(), elapsed = ?started.elapsed(), "private containerd ready");
        Ok(containerd)
    }

    /// Uses a containerd someone else runs (`--containerd`).
    pub async fn connect(address: &Path) -> Result<Containerd> {
        let channel = containerd_client::connect(address)
            .await
            .map_err(|source| RuntimeError::Connect {
                address: address.to_path_buf(),
                source,
            })?;
        let containerd = Containerd {
            channel,
            address: address.to_path_buf(),
            supervisor: std::sync::Mutex::new(None),
        };
        containerd.version().await?;
        Ok(containerd)
    }

    /// The gRPC socket.
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The pid of our private containerd, when it is ours and running.
    pub fn pid(&self) -> Option<u32> {
        self.lock_supervisor()
            .as_ref()
            .and_then(|s| s.pid())
            .map(|p| p as u32)
    }

    fn lock_supervisor(&self) -> std::sync::MutexGuard<'_, Option<Supervisor>> {
        self.supervisor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many times our private containerd was restarted after dying.
    pub fn restarts(&self) -> u32 {
        self.lock_supervisor().as_ref().map_or(0, |s| s.restarts())
    }

    /// Stops our private containerd (SIGTERM, SIGKILL after a bound); only
    /// drops the connection when the containerd is not ours. Tasks keep
    /// running in their shims, as with dockerd.
    pub async fn shutdown(&self) {
        let supervisor = self.lock_supervisor().take();
        if let Some(mut supervisor) = supervisor {
            let _ = tokio::task::spawn_blocking(move || supervisor.stop_blocking(STOP_GRACE)).await;
        }
    }

    /// containerd's version string.
    pub async fn version(&self) -> Result<String> {
        let resp = VersionClient::new(self.channel.clone())
            .version(Request::new(()))
            .await
            .map_err(|s| RuntimeError::rpc("version", "", s))?;
        Ok(resp.into_inner().version)
    }

    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    /// Registers a container (its spec and runtime) with containerd.
    pub async fn create_container(&self, id: &str, spec: &Spec) -> Result<()> {
        let value = serde_json::to_vec(spec).map_err(|source| RuntimeError::SpecEncode {
            id: id.to_string(),
            source,
        })?;
        let container = Container {
            id: id.to_string(),
            runtime: Some(Runtime {
                name: RUNTIME.to_string(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value,
            }),
            ..Default::default()
        };
        self.containers()
            .create(with_ns(CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .map_err(|s| RuntimeError::rpc("create container", id, s))?;
        tracing::debug!(id, "container created in containerd");
        Ok(())
    }

    /// Creates the task (runc create) over an overlay rootfs; returns the
    /// pid of the task's process, which waits for `start_task`.
    pub async fn create_task(&self, id: &str, rootfs: &OverlayRootfs, io: &TaskIo) -> Result<u32> {
        if io.stdout.is_some() != io.stderr.is_some() {
            return Err(RuntimeError::PartialIo(id.to_string()));
        }
        let mount = Mount {
            r#type: "overlay".to_string(),
            source: "overlay".to_string(),
            target: String::new(),
            options: rootfs.mount_options(),
        };
        let resp = self
            .tasks()
            .create(with_ns(CreateTaskRequest {
                container_id: id.to_string(),
                rootfs: vec![mount],
                stdin: io_path(&io.stdin),
                stdout: io_path(&io.stdout),
                stderr: io_path(&io.stderr),
                terminal: false,
                ..Default::default()
            }))
            .await
            .map_err(|s| RuntimeError::rpc("create task", id, s))?;
        let pid = resp.into_inner().pid;
        tracing::debug!(id, pid, "task created");
        Ok(pid)
    }

    /// Starts a created task's process.
    pub async fn start_task(&self, id: &str) -> Result<u32> {
        let resp = self
            .tasks()
            .start(with_ns(StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(|s| RuntimeError::rpc("start task", id, s))?;
        tracing::debug!(id, "task started");
        Ok(resp.into_inner().pid)
    }

    /// Sends `signal` to the task's main process, or to all its processes.
    pub async fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        self.tasks()
            .kill(with_ns(KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal: signal as u32,
                all,
            }))
            .await
            .map_err(|s| RuntimeError::rpc("kill task", id, s))?;
        tracing::debug!(id, ?signal, all, "task signalled");
        Ok(())
    }

    /// Waits until the task's main process has exited (returns at once if it
    /// already has). Rides out a restart of our containerd.
    pub async fn wait(&self, id: &str) -> Result<TaskExit> {
        let start = Instant::now();
        loop {
            let result = self
                .tasks()
                .wait(with_ns(WaitRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                }))
                .await;
            match result {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    return Ok(TaskExit {
                        code: resp.exit_status,
                        exited_at: timestamp(resp.exited_at),
                    });
                }
                Err(status) if lost_connection(&status) && start.elapsed() < UNAVAILABLE_RETRY => {
                    tracing::debug!(id, %status, "lost containerd during wait, retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(status) => return Err(RuntimeError::rpc("wait task", id, status)),
            }
        }
    }

    /// The task's state.
    pub async fn task(&self, id: &str) -> Result<TaskInfo> {
        let resp = self
            .tasks()
            .get(with_ns(GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(|s| RuntimeError::rpc("get task", id, s))?;
        resp.into_inner()
            .process
            .map(task_info)
            .ok_or_else(|| RuntimeError::Rpc {
                op: "get task",
                id: id.to_string(),
                code: Code::NotFound,
                message: "no process in answer".to_string(),
            })
    }

    /// Deletes a stopped task (the shim unmounts the rootfs and exits);
    /// returns how it ended.
    pub async fn delete_task(&self, id: &str) -> Result<TaskExit> {
        let resp = self
            .tasks()
            .delete(with_ns(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await
            .map_err(|s| RuntimeError::rpc("delete task", id, s))?
            .into_inner();
        tracing::debug!(id, exit = resp.exit_status, "task deleted");
        Ok(TaskExit {
            code: resp.exit_status,
            exited_at: timestamp(resp.exited_at),
        })
    }

    /// Deletes the container from containerd and removes the cgroup
    /// directories runc leaves behind.
    pub async fn delete_container(&self, id: &str) -> Result<()> {
        let cgroups_path = self.cgroups_path(id).await?;
        self.containers()
            .delete(with_ns(DeleteContainerRequest { id: id.to_string() }))
            .await
            .map_err(|s| RuntimeError::rpc("delete container", id, s))?;
        tracing::debug!(id, "container deleted from containerd");
        tokio::task::spawn_blocking(move || cgroup::remove(&cgroups_path))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|source| RuntimeError::Cgroup {
                id: id.to_string(),
                source,
            })
    }

    /// The cgroup the container's spec names, falling back to our
    /// default when the spec cannot be read.
    async fn cgroups_path(&self, id: &str) -> Result<PathBuf> {
        let resp = self
            .containers()
            .get(with_ns(GetContainerRequest { id: id.to_string() }))
            .await
            .map_err(|s| RuntimeError::rpc("get container", id, s))?;
        let from_spec = resp
            .into_inner()
            .container
            .and_then(|c| c.spec)
            .and_then(|any| serde_json::from_slice::<Spec>(&any.value).ok())
            .and_then(|spec| spec.linux().as_ref()?.cgroups_path().clone());
        Ok(from_spec.unwrap_or_else(|| PathBuf::from(format!("{}/{id}", spec::CGROUP_PARENT))))
    }

    /// Pids of every process in the task.
    pub async fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let resp = self
            .tasks()
            .list_pids(with_ns(ListPidsRequest {
                container_id: id.to_string(),
            }))
            .await
            .map_err(|s| RuntimeError::rpc("list pids", id, s))?;
        Ok(resp.into_inner().processes.iter().map(|p| p.pid).collect())
    }

    /// Every task in our namespace.
    pub async fn list_tasks(&self) -> Result<Vec<TaskInfo>> {
        let resp = self
            .tasks()
            .list(with_ns(ListTasksRequest::default()))
            .await
            .map_err(|s| RuntimeError::rpc("list tasks", "", s))?;
        Ok(resp.into_inner().tasks.into_iter().map(task_info).collect())
    }

    /// Ids of every container in our namespace.
    pub async fn list_containers(&self) -> Result<Vec<String>> {
        let resp = self
            .containers()
            .list(with_ns(ListContainersRequest::default()))
            .await
            .map_err(|s| RuntimeError::rpc("list containers", "", s))?;
        Ok(resp
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect())
    }

    /// Removes every task and container of ours that containerd still holds
    /// (a daemon that crashed left them): tasks are killed, waited for and
    /// deleted, then containers deleted. Keeps going past failures and
    /// returns the first one after trying everything.
    pub async fn cleanup_leftovers(&self) -> Result<Leftovers> {
        let mut removed = Leftovers::default();
        let mut first_error = None;
        for task in self.list_tasks().await? {
            match self.remove_task(&task).await {
                Ok(()) => removed.tasks.push(task.id),
                Err(e) => {
                    tracing::warn!(id = %task.id, error = %e, "cannot remove leftover task");
                    first_error.get_or_insert(e);
                }
            }
        }
        for id in self.list_containers().await? {
            match self.delete_container(&id).await {
                Ok(()) => removed.containers.push(id),
                Err(e) => {
                    tracing::warn!(%id, error = %e, "cannot remove leftover container");
                    first_error.get_or_insert(e);
                }
            }
        }
        // Only a private containerd's state directory is ours to sweep.
        if self.pid().is_some() {
            if let Some(state) = self.address.parent() {
                removed
                    .tasks
                    .extend(super::stale::sweep_bundles(state, &self.address));
            }
        }
        if !removed.tasks.is_empty() || !removed.containers.is_empty() {
            tracing::info!(tasks = ?removed.tasks, containers = ?removed.containers, "removed containerd leftovers");
        }
        first_error.map_or(Ok(removed), Err)
    }

    async fn remove_task(&self, task: &TaskInfo) -> Result<()> {
        if task.status != TaskStatus::Stopped {
            match self.kill(&task.id, Signal::SIGKILL, true).await {
                Ok(()) => {}
                // Raced with its exit.
                Err(RuntimeError::Rpc {
                    code: Code::NotFound | Code::FailedPrecondition,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
            self.wait(&task.id).await?;
        }
        self.delete_task(&task.id).await.map(|_| ())
    }
}

/// Whether a call failed because containerd went away (it is restarting):
/// no connection, or the connection broke under a pending call.
fn lost_connection(status: &tonic::Status) -> bool {
    if status.code() == Code::Unavailable {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<hyper::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Connects to a containerd we just spawned, once it answers.
async fn connect_when_ready(
    address: &Path,
    supervisor: &Supervisor,
    log: &Path,
) -> Result<Channel> {
    let start = Instant::now();
    loop {
        let answer = match containerd_client::connect(address).await {
            Ok(channel) => VersionClient::new(channel.clone())
                .version(Request::new(()))
                .await
                .map(|_| channel)
                .map_err(|s| s.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match answer {
            Ok(channel) => return Ok(channel),
            Err(e) if start.elapsed() >= READY_TIMEOUT || supervisor.pid().is_none() => {
                tracing::debug!(error = %e, "containerd not ready");
                return Err(RuntimeError::NotReady {
                    address: address.to_path_buf(),
                    waited: start.elapsed(),
                    log: log.to_path_buf(),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn task_info(p: containerd_client::types::v1::Process) -> TaskInfo {
    let status = TaskStatus::from(p.status);
    TaskInfo {
        exit: (status == TaskStatus::Stopped).then(|| TaskExit {
            code: p.exit_status,
            exited_at: timestamp(p.exited_at),
        }),
        // containerd 1.6 leaves container_id empty; a task's init process
        // is named after its container.
        id: if p.container_id.is_empty() {
            p.id
        } else {
            p.container_id
        },
        pid: p.pid,
        status,
    }
}

/// containerd's config: everything under our own root and state so several
/// daemons (and a system containerd) can coexist; no CRI, no snapshotters
/// that cannot work here (we hand containerd ready mounts).
fn private_config(root: &Path, state: &Path, address: &Path) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{address}"

[debug]
  level = "info"
"#,
        root = root.display(),
        state = state.display(),
        address = address.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_private() {
        let text = private_config(
            Path::new("/d/containerd"),
            Path::new("/e/containerd"),
            Path::new("/e/containerd/containerd.sock"),
        );
        assert!(text.contains("root = \"/d/containerd\""));
        assert!(text.contains("state = \"/e/containerd\""));
        assert!(text.contains("address = \"/e/containerd/containerd.sock\""));
        assert!(text.contains("\"io.containerd.grpc.v1.cri\""));
    }

    #[test]
    fn error_kinds_follow_grpc_codes() {
        let err = |code| RuntimeError::Rpc {
            op: "x",
            id: "y".into(),
            code,
            message: String::new(),
        };
        assert_eq!(err(Code::NotFound).kind(), ErrorKind::NotFound);
        assert_eq!(err(Code::AlreadyExists).kind(), ErrorKind::Conflict);
        assert_eq!(err(Code::Unavailable).kind(), ErrorKind::Unavailable);
        assert_eq!(err(Code::Internal).kind(), ErrorKind::System);
    }
}
