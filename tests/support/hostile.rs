//! Servers a hostile tenant could point its credentials Secret at. No real Flashback part can
//! play these roles, so they are written by hand: raw HTTP on a loopback port, each bounded
//! in what it sends, stopped when dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the server does with each request.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Reads the request and never answers.
    Hang,
    /// Answers 200 with a chunked body of this many bytes, as fast as it can.
    Huge(u64),
    /// Answers 200 with this body.
    Body(&'static str),
    /// Answers 200 with a listing of this many empty JSON objects.
    Objects(usize),
    /// Answers 307 to this URL.
    Redirect(&'static str),
}

pub struct HostileServer {
    pub url: String,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
}

impl HostileServer {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, behaviour, shared.clone()));
            }
        });
        Self {
            url,
            counters,
            task,
        }
    }

    /// Requests that reached the server.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// Requests read and not yet answered or given up by the client.
    pub fn in_flight(&self) -> u64 {
        self.counters.in_flight.load(Ordering::Relaxed)
    }

    /// The most requests that were in flight at once.
    pub fn peak_in_flight(&self) -> u64 {
        self.counters.peak_in_flight.load(Ordering::Relaxed)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour, counters: Arc<Counters>) {
    // One request per connection: read up to the end of its headers.
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
        }
        if seen.len() > 64 * 1024 {
            return;
        }
    }
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    counters.peak_in_flight.fetch_max(now, Ordering::Relaxed);
    respond(&mut stream, behaviour).await;
    counters.in_flight.fetch_sub(1, Ordering::Relaxed);
}

async fn respond(stream: &mut TcpStream, behaviour: Behaviour) {
    let mut buffer = [0u8; 4096];
    match behaviour {
        Behaviour::Hang => {
            // Hold the connection open and answer nothing until the client gives up (its
            // read then ends).
            while let Ok(n) = stream.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
            }
        }
        Behaviour::Objects(count) => {
            let body = format!(
                r#"{{"success":true,"repos":[{}]}}"#,
                vec!["{}"; count].join(",")
            );
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        }
        Behaviour::Redirect(to) => {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
        }
        Behaviour::Body(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        }
        Behaviour::Huge(total) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 1 << 20];
            let mut sent = 0u64;
            while sent < total {
                let frame = format!("{:x}\r\n", chunk.len());
                if stream.write_all(frame.as_bytes()).await.is_err()
                    || stream.write_all(&chunk).await.is_err()
                    || stream.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
                sent += chunk.len() as u64;
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
        }
    }
}
