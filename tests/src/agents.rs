//! One blocking interface over every driver, so each scenario is written once.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rookery_core::{
    Config, Event, Identity, IncomingQuery, Member, MemberStatus, QueryHandle, QueryParams,
};
use rookery_driver::{AgentError, AgentStats, Options, QueryAnswer, ShutdownMode};

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
    answered: Mutex<HashSet<QueryHandle>>,
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
            answered: Mutex::new(HashSet::new()),
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

    /// `join_with`.
    pub fn join_with(&self, seeds: &[SocketAddr], ignore_old: bool) -> Result<usize, AgentError> {
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.join_with(seeds, ignore_old)),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.join_with(seeds, ignore_old)),
            Inner::Mio(h, _) => h.join_with(seeds, ignore_old),
        }
    }

    /// `user_event`.
    pub fn user_event(&self, name: &str, payload: &[u8], coalesce: bool) -> Result<(), AgentError> {
        let payload = payload.to_vec();
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.user_event(name, payload, coalesce)),
            Inner::AsyncStd(h, _) => {
                async_std::task::block_on(h.user_event(name, payload, coalesce))
            }
            Inner::Mio(h, _) => h.user_event(name, payload, coalesce),
        }
    }

    /// `query`; the answers (ending with the done) arrive on a std receiver whatever the
    /// driver (the async drivers' streams are forwarded by a task).
    pub fn query(
        &self,
        name: &str,
        payload: &[u8],
        params: QueryParams,
    ) -> Result<Receiver<QueryAnswer>, AgentError> {
        let payload = payload.to_vec();
        let (tx, rx) = std::sync::mpsc::channel();
        match &self.inner {
            Inner::Tokio(h, _) => {
                let rt = tokio_runtime();
                let mut answers = rt.block_on(h.query(name, payload, params))?;
                rt.spawn(async move {
                    while let Some(a) = answers.recv().await {
                        if tx.send(a).is_err() {
                            break;
                        }
                    }
                });
            }
            Inner::AsyncStd(h, _) => {
                let mut answers = async_std::task::block_on(h.query(name, payload, params))?;
                async_std::task::spawn(async move {
                    while let Some(a) = answers.recv().await {
                        if tx.send(a).is_err() {
                            break;
                        }
                    }
                });
            }
            Inner::Mio(h, _) => return h.query(name, payload, params),
        }
        Ok(rx)
    }

    /// `respond`.
    pub fn respond(&self, handle: &QueryHandle, payload: &[u8]) -> Result<(), AgentError> {
        let payload = payload.to_vec();
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.respond(handle, payload)),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.respond(handle, payload)),
            Inner::Mio(h, _) => h.respond(handle, payload),
        }
    }

    /// Answer every query event not answered yet with `answer(query)`; returns how many were
    /// answered now.
    pub fn answer_queries(&self, answer: impl Fn(&IncomingQuery) -> Vec<u8>) -> usize {
        let queries: Vec<IncomingQuery> = self
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Query(q) => Some(q),
                _ => None,
            })
            .collect();
        let mut n = 0;
        for q in queries {
            if self.answered.lock().expect("lock").insert(q.handle.clone()) {
                self.respond(&q.handle, &answer(&q)).expect("respond");
                n += 1;
            }
        }
        n
    }

    /// `send`.
    pub fn send(&self, to: &str, payload: &[u8]) -> Result<(), AgentError> {
        let payload = payload.to_vec();
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.send(to, payload)),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.send(to, payload)),
            Inner::Mio(h, _) => h.send(to, payload),
        }
    }

    /// `broadcast`.
    pub fn broadcast(&self, payload: &[u8]) -> Result<usize, AgentError> {
        let payload = payload.to_vec();
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.broadcast(payload)),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.broadcast(payload)),
            Inner::Mio(h, _) => h.broadcast(payload),
        }
    }

    /// `remove_failed`.
    pub fn remove_failed(&self, name: &str, prune: bool) -> Result<(), AgentError> {
        match &self.inner {
            Inner::Tokio(h, _) => tokio_runtime().block_on(h.remove_failed(name, prune)),
            Inner::AsyncStd(h, _) => async_std::task::block_on(h.remove_failed(name, prune)),
            Inner::Mio(h, _) => h.remove_failed(name, prune),
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
