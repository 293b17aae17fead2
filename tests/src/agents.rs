//! One blocking interface over every driver, so each scenario is written once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rookery_core::{Config, Event, Identity, Member, MemberStatus};
use rookery_driver::{AgentError, AgentStats, Options, ShutdownMode};

/// Which driver runs an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// rookery-tokio on a shared multi-threaded runtime.
    Tokio,
    /// rookery-async-std.
    AsyncStd,
    /// rookery-mio (its own thread per agent).
    Mio,
}

impl Driver {
    /// Parse `tokio`, `async-std` or `mio`.
    pub fn parse(s: &str) -> Option<Driver> {
        match s {
            "tokio" => Some(Driver::Tokio),
            "async-std" => Some(Driver::AsyncStd),
            "mio" => Some(Driver::Mio),
            _ => None,
        }
    }
}

/// The tokio runtime shared by every tokio agent of a test process.
pub fn tokio_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

enum Inner {
    Tokio(
        rookery_tokio::AgentHandle,
        Mutex<rookery_tokio::EventStream>,
    ),
    AsyncStd(
        rookery_async_std::AgentHandle,
        Mutex<rookery_async_std::EventStream>,
    ),
    Mio(
        rookery_mio::AgentHandle,
        Mutex<std::sync::mpsc::Receiver<Event>>,
    ),
}

/// A running agent of any driver, with blocking operations.
pub struct TestAgent {
    inner: Inner,
    /// Which driver runs it.
    pub driver: Driver,
    events: Mutex<Vec<Event>>,
}

impl std::fmt::Debug for TestAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} agent {} at {}",
            self.driver,
            self.name(),
            self.addr()
        )
    }
}

impl TestAgent {
    /// Start an agent named `name` on `bind` (port 0 for any).
    pub fn start(
        driver: Driver,
        name: &str,
        bind: SocketAddr,
        config: Config,
        options: Options,
    ) -> Arc<TestAgent> {
        Self::try_start(driver, name, bind, config, options).expect("agent starts")
    }

    /// Start an agent, or say why it could not start.
    pub fn try_start(
        driver: Driver,
        name: &str,
        bind: SocketAddr,
        config: Config,
        options: Options,
    ) -> Result<Arc<TestAgent>, rookery_driver::StartError> {
        let identity = Identity::new(name, bind);
        let inner = match driver {
            Driver::Tokio => {
                let (h, ev) = tokio_runtime()
                    .block_on(rookery_tokio::Agent::start(config, identity, options))?;
                Inner::Tokio(h, Mutex::new(ev))
            }
            Driver::AsyncStd => {
                let (h, ev) = async_std::task::block_on(rookery_async_std::Agent::start(
                    config, identity, options,
                ))?;
                Inner::AsyncStd(h, Mutex::new(ev))
            }
            Driver::Mio => {
                let (h, ev) = rookery_mio::Agent::spawn(config, identity, options)?;
                Inner::Mio(h, Mutex::new(ev))
            }
        };
        Ok(Arc::new(TestAgent {
            inner,
            driver,
            events: Mutex::new(Vec::new()),
        }))
    }

    /// The agent's address.
    pub fn addr(&self) -> SocketAddr {
        match &self.inner {
            Inner::Tokio(h, _) => h.local_addr(),
            Inner::AsyncStd(h, _) => h.local_addr(),
            Inner::Mio(h, _) => h.local_addr(),
        }
    }

    /// The agent's name.
    pub fn name(&self) -> String {
        match &self.inner {
            Inner::Tokio(h, _) => h.name().to_string(),
            Inner::AsyncStd(h, _) => h.name().to_string(),
            Inner::Mio(h, _) => h.name().to_string(),
        }
    }

    /// `join`.
    pub fn join(&self, seeds: &[SocketAddr]) -> Result<usize, AgentError> {
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.join(seeds)),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.join(seeds)),
            Inner::Mio(h, _) => h.join(seeds),
        }
    }

    /// `leave`.
    pub fn leave(&self) -> Result<(), AgentError> {
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.leave()),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.leave()),
            Inner::Mio(h, _) => h.leave(),
        }
    }

    /// `shutdown`.
    pub fn shutdown(&self, mode: ShutdownMode) {
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.shutdown(mode)),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.shutdown(mode)),
            Inner::Mio(h, _) => h.shutdown(mode),
        }
    }

    /// `members`.
    pub fn members(&self) -> Result<Vec<Member>, AgentError> {
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.members()),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.members()),
            Inner::Mio(h, _) => h.members(),
        }
    }

    /// `stats`.
    pub fn stats(&self) -> Result<AgentStats, AgentError> {
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.stats()),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.stats()),
            Inner::Mio(h, _) => h.stats(),
        }
    }

    /// `set_tags`.
    pub fn set_tags(&self, tags: rookery_core::Tags) -> Result<(), AgentError> {
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.set_tags(tags)),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.set_tags(tags)),
            Inner::Mio(h, _) => h.set_tags(tags),
        }
    }

    /// The status this agent sees for `name` (None if unknown or the agent stopped).
    pub fn status_of(&self, name: &str) -> Option<MemberStatus> {
        self.members()
            .ok()?
            .into_iter()
            .find(|m| &*m.name == name)
            .map(|m| m.status)
    }

    /// How many members this agent sees alive.
    pub fn alive(&self) -> usize {
        self.members().map_or(0, |ms| {
            ms.iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .count()
        })
    }

    /// Every event received so far (drains the driver's stream into a log first).
    pub fn events(&self) -> Vec<Event> {
        let mut log = self.events.lock().expect("events lock");
        loop {
            let next = match &self.inner {
                Inner::Tokio(_, ev) => ev.lock().expect("lock").try_recv(),
                Inner::AsyncStd(_, ev) => ev.lock().expect("lock").try_recv(),
                Inner::Mio(_, ev) => ev.lock().expect("lock").try_recv().ok(),
            };
            match next {
                Some(e) => log.push(e),
                None => return log.clone(),
            }
        }
    }
}

/// Protocol timing for driver tests: `Config::local()` with intervals shortened further so a
/// 10-node scenario settles in a few seconds on loopback. The retransmit multiplier is LAN's 4
/// rather than local's 2: with 2, a leave announcement sometimes misses a member, which then
/// declares the leaver failed, and the core (before the Serf layer's leave intents) never
/// turns a failed member into a left one.
pub fn fast_config() -> Config {
    let mut c = Config::local();
    c.probe_interval = Duration::from_millis(200);
    c.probe_timeout = Duration::from_millis(100);
    c.gossip_interval = Duration::from_millis(50);
    c.suspicion_mult = 3;
    c.suspicion_max_timeout_mult = 3;
    c.retransmit_mult = 4;
    c.push_pull_interval = Duration::from_secs(3);
    c.tcp_timeout = Duration::from_millis(1000);
    c.gossip_to_the_dead_time = Duration::from_secs(5);
    c
}

/// Poll `cond` every 50 ms until it holds or `limit` passes; returns whether it held and how
/// long it took.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> (bool, Duration) {
    let start = std::time::Instant::now();
    loop {
        if cond() {
            return (true, start.elapsed());
        }
        if start.elapsed() >= limit {
            return (false, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
