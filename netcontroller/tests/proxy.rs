//! The in-process userland proxy on loopback, inside a private namespace.

mod netns_support;

use std::net::{Ipv4Addr, SocketAddr};

use netcontroller::error::{ErrorKind, Kind};
use netcontroller::model::Proto;
use netcontroller::proxy::PortProxy;
use netns_support::TestNetns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Runs `f` on a single-threaded runtime inside a namespace with lo up, so
/// every socket (ours and the proxy's) lives in that namespace.
fn in_netns<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F + Send) {
    let ns = TestNetns::new();
    ns.cmd("ip", &["link", "set", "lo", "up"]);
    ns.run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    });
}

/// A TCP server that echoes every byte and closes when the client does.
async fn tcp_echo() -> u16 {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
        }
    });
    port
}

#[test]
fn tcp_data_flows_both_ways_until_the_client_closes() {
    in_netns(|| async {
        let backend = tcp_echo().await;
        let proxy = PortProxy::start(Proto::Tcp, LOOPBACK, 8080, LOOPBACK, backend)
            .await
            .unwrap();
        // Two clients at once, 1 MiB each, so both directions stream.
        let mut clients = Vec::new();
        for seed in 0..2u8 {
            clients.push(tokio::spawn(async move {
                let data: Vec<u8> = (0..1 << 20).map(|i| (i as u8) ^ seed).collect();
                let s = TcpStream::connect((LOOPBACK, 8080)).await.unwrap();
                let (mut r, mut w) = s.into_split();
                let sent = data.clone();
                let writer = tokio::spawn(async move {
                    w.write_all(&sent).await.unwrap();
                    w.shutdown().await.unwrap();
                });
                let mut echoed = Vec::new();
                r.read_to_end(&mut echoed).await.unwrap();
                writer.await.unwrap();
                assert!(echoed == data, "client {seed} got back other bytes");
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        proxy.stop().await;
    });
}

#[test]
fn udp_replies_go_back_to_each_client() {
    in_netns(|| async {
        let backend = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let backend_port = backend.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = backend.recv_from(&mut buf).await.unwrap();
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                backend.send_to(&reply, from).await.unwrap();
            }
        });
        let proxy = PortProxy::start(Proto::Udp, LOOPBACK, 5353, LOOPBACK, backend_port)
            .await
            .unwrap();
        let a = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let b = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        a.connect((LOOPBACK, 5353)).await.unwrap();
        b.connect((LOOPBACK, 5353)).await.unwrap();
        let mut buf = [0u8; 1500];
        for round in 0..3 {
            a.send(format!("a{round}").as_bytes()).await.unwrap();
            b.send(format!("b{round}").as_bytes()).await.unwrap();
            let n = a.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], format!("echo:a{round}").as_bytes());
            let n = b.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], format!("echo:b{round}").as_bytes());
        }
        proxy.stop().await;
    });
}

#[test]
fn bind_conflict_reports_dockerds_message() {
    in_netns(|| async {
        let _taken = std::net::TcpListener::bind("0.0.0.0:8080").unwrap();
        let err = PortProxy::start(Proto::Tcp, Ipv4Addr::UNSPECIFIED, 8080, LOOPBACK, 80)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Error starting userland proxy: listen tcp4 0.0.0.0:8080: bind: address already in use"
        );
        assert_eq!(err.kind(), ErrorKind::Conflict);

        let _taken = std::net::UdpSocket::bind("127.0.0.1:5353").unwrap();
        let err = PortProxy::start(Proto::Udp, LOOPBACK, 5353, LOOPBACK, 53)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Error starting userland proxy: listen udp4 127.0.0.1:5353: bind: address already in use"
        );
    });
}

#[test]
fn stop_frees_the_port_and_ends_connections() {
    in_netns(|| async {
        let backend = tcp_echo().await;
        let proxy = PortProxy::start(Proto::Tcp, LOOPBACK, 8080, LOOPBACK, backend)
            .await
            .unwrap();
        let mut open = TcpStream::connect((LOOPBACK, 8080)).await.unwrap();
        open.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        open.read_exact(&mut buf).await.unwrap();
        proxy.stop().await;

        // The carried connection is closed: reading sees EOF or a reset.
        let mut rest = Vec::new();
        let ended = open.read_to_end(&mut rest).await;
        assert!(
            ended.map_or(true, |n| n == 0),
            "connection still carries data"
        );

        let addr: SocketAddr = (LOOPBACK, 8080).into();
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
        let again = PortProxy::start(Proto::Tcp, LOOPBACK, 8080, LOOPBACK, backend)
            .await
            .unwrap();
        drop(again);
    });
}

#[test]
fn sctp_is_refused_as_unsupported() {
    in_netns(|| async {
        let err = PortProxy::start(Proto::Sctp, LOOPBACK, 9000, LOOPBACK, 9000)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    });
}
