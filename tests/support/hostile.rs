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
    /// Answers 200 with a listing of this many repositories, each naming 16,000 AI models by
    /// a one-letter id: 64 KB of text each, hundreds of kilobytes once decoded.
    Costly(usize),
    /// Answers 200 with a listing of this many well-formed repositories.
    Listed(usize),
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
        Behaviour::Costly(count) => {
            let models = vec![r#""a""#; 16_000].join(",");
            let listed: Vec<String> = (0..count)
                .map(|n| {
                    format!(
                        r#"{{"id":"r-{n}","name":"r{n}","storageType":"S3","mode":"MIRROR","aiLlms":[{models}]}}"#
                    )
                })
                .collect();
            let body = format!(r#"{{"success":true,"repos":[{}]}}"#, listed.join(","));
            write_json(stream, &body).await;
        }
        Behaviour::Listed(count) => {
            let listed: Vec<String> = (0..count)
                .map(|n| {
                    format!(r#"{{"id":"r-{n}","name":"r{n}","storageType":"S3","mode":"MIRROR"}}"#)
                })
                .collect();
            let body = format!(r#"{{"success":true,"repos":[{}]}}"#, listed.join(","));
            write_json(stream, &body).await;
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

/// A server that answers every create with an id of someone else's (another tenant's
/// repository or bucket, at another API), and lists that id with exactly the name and body
/// that were sent, created now: a tenant's own server, as consistent as a liar can be.
pub struct Impostor {
    pub url: String,
    flood: Arc<std::sync::Mutex<Vec<String>>>,
    key_deletes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

/// What the impostor was last sent, per path, to list back.
#[derive(Default)]
struct Sent {
    repo: Option<serde_json::Value>,
    bucket: Option<serde_json::Value>,
}

impl Impostor {
    /// Answers `POST /repo` with `repo_id` and `POST /bucket` with `bucket_id`.
    pub async fn start(repo_id: &str, bucket_id: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let ids = Arc::new((repo_id.to_string(), bucket_id.to_string()));
        let sent = Arc::new(tokio::sync::Mutex::new(Sent::default()));
        let flood: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let key_deletes: Arc<AtomicU64> = Arc::default();
        let (flooding, deletes) = (flood.clone(), key_deletes.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answer = impostor_answer(
                    stream,
                    ids.clone(),
                    sent.clone(),
                    flooding.clone(),
                    deletes.clone(),
                );
                tokio::spawn(answer);
            }
        });
        Self {
            url,
            flood,
            key_deletes,
            task,
        }
    }

    /// From now on, every listing of a repository's keys shows 20 new keys named as the
    /// FlashbackAccessKey with this uid names its own.
    pub fn flood_keys_of(&self, uid: &str) {
        self.flood.lock().unwrap().push(format!("k8s-{uid}-"));
    }

    /// `DELETE /repo/{id}/apikey/{keyId}` calls received.
    pub fn key_deletes(&self) -> u64 {
        self.key_deletes.load(Ordering::Relaxed)
    }
}

/// Keys listed so far by a flooding impostor, for fresh ids.
static FLOODED: AtomicU64 = AtomicU64::new(0);

impl Drop for Impostor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn impostor_answer(
    mut stream: TcpStream,
    ids: Arc<(String, String)>,
    sent: Arc<tokio::sync::Mutex<Sent>>,
    flood: Arc<std::sync::Mutex<Vec<String>>>,
    key_deletes: Arc<AtomicU64>,
) {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
        }
        if seen.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
        .min(64 * 1024);
    while seen.len() < head_end + length {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
        }
    }
    let body: serde_json::Value =
        serde_json::from_slice(&seen[head_end..head_end + length]).unwrap_or_default();
    let request_line = head.lines().next().unwrap_or_default().to_string();
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let (repo_id, bucket_id) = (&ids.0, &ids.1);
    let answer = {
        let mut sent = sent.lock().await;
        match (method, path) {
            ("POST", "/repo") => {
                sent.repo = Some(body);
                serde_json::json!({"success": true, "repoId": repo_id})
            }
            ("POST", "/bucket") => {
                sent.bucket = Some(body);
                serde_json::json!({"success": true, "bucketId": bucket_id})
            }
            ("GET", "/repo") => {
                let repos: Vec<serde_json::Value> = sent
                    .repo
                    .iter()
                    .map(|repo| {
                        serde_json::json!({
                            "id": repo_id,
                            "name": repo["name"],
                            "storageType": repo["storageType"],
                            "mode": repo["mode"],
                            "workspaceId": repo["workspaceId"],
                            "buckets": repo["repoBuckets"],
                            "createdAt": now,
                        })
                    })
                    .collect();
                serde_json::json!({"success": true, "repos": repos})
            }
            ("GET", "/bucket") => {
                let buckets: Vec<serde_json::Value> = sent
                    .bucket
                    .iter()
                    .map(|bucket| {
                        serde_json::json!({
                            "id": bucket_id,
                            "name": bucket["name"],
                            "bucket": bucket["bucket"],
                            "storageType": bucket["storageType"],
                            "region": bucket["region"],
                            "endpoint": bucket["endpoint"],
                            "workspaceId": bucket["workspaceId"],
                            "status": "ACTIVE",
                            "createdAt": now,
                        })
                    })
                    .collect();
                serde_json::json!({"success": true, "buckets": buckets})
            }
            ("GET", path) if path.ends_with("/apikey") => {
                let prefixes = flood.lock().unwrap().clone();
                let keys: Vec<serde_json::Value> = prefixes
                    .iter()
                    .flat_map(|prefix| {
                        let now = now.clone();
                        (0..20).map(move |_| {
                            let n = FLOODED.fetch_add(1, Ordering::Relaxed);
                            serde_json::json!({
                                "id": format!("flood-{n}"),
                                "name": format!("{prefix}{n:012}"),
                                "accessType": "READ",
                                "key": format!("AKFLOOD{n}"),
                                "createdAt": now,
                            })
                        })
                    })
                    .collect();
                serde_json::json!({"success": true, "keys": keys})
            }
            ("DELETE", path) if path.contains("/apikey/") => {
                key_deletes.fetch_add(1, Ordering::Relaxed);
                serde_json::json!({"success": true})
            }
            _ => serde_json::json!({"success": true}),
        }
    };
    let body = answer.to_string();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
}

/// Writes a 200 answer with this JSON body, then closes.
async fn write_json(stream: &mut TcpStream, body: &str) {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
}
