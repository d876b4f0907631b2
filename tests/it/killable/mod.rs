//! The emulators' server plumbing: an axum app served on a listener whose every connection can
//! be cut, one at a time or all at once, plain or TLS.
//!
//! Owns: [`Serving`] (one port from start to drop, across stop and restart), [`Server`]
//! (spawn, graceful [`shut_down`](Server::shut_down) that also cuts idle keep-alive
//! connections, [`abort`](Server::abort) for `Drop`), the per-connection kill switch and
//! [`Conn`], the connect info a handler takes to cut the connection its request came on (an
//! emulator's `Fault::Disconnect`). With a TLS acceptor, each connection's handshake is done
//! before it is handed to axum; a client that fails it is skipped.
//!
//! Leaves to the emulators: the routes and their state, the certificate, and everything
//! recorded. It must not know any protocol: it moves bytes and cuts connections, nothing else.
//!
//! Declared once in each crate that includes an emulator, beside it, and named by the emulators
//! as `super::killable`: at the root of the `it` test binary (tests/it/main.rs), in
//! `benches/common/mod.rs` beside `hec_emulator`, and brought to the root of `benches/e2e.rs`
//! (where `es_emulator` is included) by a `use`.
#![allow(dead_code)] // the HEC emulator serves plain connections only

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server on 127.0.0.1 and a port chosen at start, kept across [`stop`](Serving::stop) /
/// [`restart`](Serving::restart); aborted when dropped. What an emulator holds.
pub struct Serving {
    addr: SocketAddr,
    /// The emulator, named in panics and in the error of a cut connection.
    who: &'static str,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    server: Mutex<Option<Server>>,
}

impl Serving {
    /// Serves `app` on 127.0.0.1 and a free port (through `acceptor` when given).
    pub async fn start(who: &'static str, acceptor: Option<tokio_rustls::TlsAcceptor>, app: Router) -> Serving {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("{who}: bind 127.0.0.1:0: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{who}: local address: {e}"));
        let server = Server::spawn(listener, acceptor.clone(), who, app);
        Serving { addr, who, acceptor, server: Mutex::new(Some(server)) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: the listening socket is closed (connections are refused) and every open
    /// connection is dropped, idle or not. Does nothing when stopped.
    pub async fn stop(&self) {
        let server = self.server.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(server) = server {
            server.shut_down().await;
        }
    }

    /// Serves `app` again on the same port (stopping first if still serving); the port may take
    /// a moment to be free again, so binding is retried for up to 5 s.
    pub async fn restart(&self, app: Router) {
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("{}: cannot listen on {} again: {e}", self.who, self.addr),
            }
        };
        let server = Server::spawn(listener, self.acceptor.clone(), self.who, app);
        *self.server.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(server);
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(server) = self.server.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            server.abort();
        }
    }
}

/// One running axum server and the kill switches of the connections it accepted.
pub struct Server {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    conns: Conns,
}

type Conns = Arc<Mutex<Vec<Weak<KillSwitch>>>>;

impl Server {
    /// Serves `app` on `listener` (through `acceptor` when given). `who` names the emulator in
    /// the error a cut connection's later reads and writes return.
    pub fn spawn(
        listener: TcpListener,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
        who: &'static str,
        app: Router,
    ) -> Server {
        let conns: Conns = Arc::default();
        let listener = KillableListener { inner: listener, acceptor, who, conns: conns.clone() };
        let (shutdown, rx) = oneshot::channel::<()>();
        let app = app.into_make_service_with_connect_info::<Conn>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Server { shutdown, task, conns }
    }

    /// Closes the listening socket and cuts every open connection, idle or not; returns once the
    /// server task has ended (or after 5 s, aborting it).
    pub async fn shut_down(self) {
        let Server { shutdown, task, conns } = self;
        let _ = shutdown.send(());
        let deadline = Instant::now() + Duration::from_secs(5);
        // Kill repeatedly: a connection accepted while the accept loop was stopping is cut too.
        while !task.is_finished() && Instant::now() < deadline {
            kill_all(&conns);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kill_all(&conns);
        task.abort();
        let _ = task.await;
    }

    /// The same without waiting, for `Drop`.
    pub fn abort(self) {
        let Server { shutdown, task, conns } = self;
        let _ = shutdown.send(());
        kill_all(&conns);
        task.abort();
    }
}

fn kill_all(conns: &Conns) {
    let conns = conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for kill in conns.iter().filter_map(Weak::upgrade) {
        kill.kill();
    }
}

/// Set once, makes every later read, write, flush or shutdown on the connection fail, and
/// wakes a pending read so an idle keep-alive connection is dropped at once.
struct KillSwitch {
    killed: AtomicBool,
    waker: Mutex<Option<Waker>>,
    /// The emulator, named in the error.
    who: &'static str,
}

impl KillSwitch {
    fn new(who: &'static str) -> KillSwitch {
        KillSwitch { killed: AtomicBool::new(false), waker: Mutex::new(None), who }
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            waker.wake();
        }
    }

    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            Err(io::Error::new(io::ErrorKind::ConnectionAborted, format!("connection cut by the {}", self.who)))
        } else {
            Ok(())
        }
    }
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

struct KillableStream {
    inner: Stream,
    kill: Arc<KillSwitch>,
}

impl AsyncRead for KillableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        *self.kill.waker.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cx.waker().clone());
        self.kill.check()?;
        match &mut self.inner {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.kill.check()?;
        match &mut self.inner {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.kill.check()?;
        match &mut self.inner {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.kill.check()?;
        match &mut self.inner {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

struct KillableListener {
    inner: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    who: &'static str,
    conns: Conns,
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.inner.accept().await else {
                // Like axum's own listener: back off on accept errors (e.g. too many files).
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let stream = match &self.acceptor {
                None => Stream::Plain(tcp),
                // A client that does not trust us fails its handshake: skip it, accept the next.
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                    _ => continue,
                },
            };
            let kill = Arc::new(KillSwitch::new(self.who));
            let mut conns = self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            conns.retain(|c| c.strong_count() > 0);
            conns.push(Arc::downgrade(&kill));
            return (KillableStream { inner: stream, kill }, peer);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The connection a request came on (axum's `ConnectInfo<Conn>`), for an emulator's
/// `Fault::Disconnect`.
#[derive(Clone)]
pub struct Conn(Arc<KillSwitch>);

impl Conn {
    /// Cuts this connection: the answer being written never reaches the client.
    pub fn kill(&self) {
        self.0.kill();
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        Conn(stream.io().kill.clone())
    }
}
