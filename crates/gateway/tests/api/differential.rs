//! Ambiguous and malformed request framing, sent the same way through every HTTP path the
//! gateway has, and judged by RFC 9112 §6.3 as nginx applies it: a head whose body length
//! cannot be told for certain (two different `Content-Length` lines, a length that is not
//! digits, obs-fold, a transfer coding on HTTP/1.0) is a 400 that closes the connection; a
//! chunked body with a broken chunk size never reaches an upstream whole; `Content-Length`
//! with chunked forwards the chunked body without the length and closes; a bare LF ends a
//! line; pipelined requests are answered in order. Equal `Content-Length` lines go on as
//! one (RFC 9110 §8.6 allows it and hyper reads them so; nginx refuses them). Behind the
//! gateway a recording upstream parses strictly and notes any request whose framing it
//! could read two ways: there must be none, and every path must give the same answers.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use gateway::{config::HttpPath, proxy::Upstream};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use crate::support::{TestGateway, World};

/// Every HTTP path a gateway can be configured with.
const PATHS: [HttpPath; 2] = [HttpPath::Own, HttpPath::Hyper];

/// What the recording upstream saw: each whole request as `METHOD target body`, or
/// `AMBIGUOUS ...` for a head it could frame two ways.
type Seen = Arc<Mutex<Vec<String>>>;

/// An upstream that reads requests strictly (one framing, exactly one `Content-Length` of
/// digits or exactly `chunked` with well-formed chunks), notes each, and answers its target
/// as the body. A request it cannot read whole is not noted.
async fn recording_upstream() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Seen::default();
    let noted = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(record(stream, noted.clone()));
        }
    });
    (url, seen)
}

async fn record(mut stream: TcpStream, seen: Seen) {
    let mut buffer = Vec::new();
    loop {
        let parsed = loop {
            match parse_request(&buffer) {
                Parse::Incomplete => {}
                done => break done,
            }
            let mut piece = [0u8; 4096];
            match stream.read(&mut piece).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&piece[..n]),
            }
        };
        let (used, method, target, body) = match parsed {
            Parse::Whole {
                used,
                method,
                target,
                body,
            } => (used, method, target, body),
            Parse::Ambiguous(head) => {
                seen.lock().unwrap().push(format!("AMBIGUOUS {head}"));
                return;
            }
            Parse::Incomplete => unreachable!(),
        };
        buffer.drain(..used);
        seen.lock().unwrap().push(format!(
            "{method} {target} {}",
            String::from_utf8_lossy(&body)
        ));
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{target}",
            target.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

enum Parse {
    Incomplete,
    Whole {
        used: usize,
        method: String,
        target: String,
        body: Vec<u8>,
    },
    Ambiguous(String),
}

/// One request off the front of `wire`, read as strictly as RFC 9112 allows.
fn parse_request(wire: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(wire) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Parse::Incomplete,
        Err(e) => return Parse::Ambiguous(format!("unparsable head: {e}")),
    };
    let text = String::from_utf8_lossy(&wire[..head]).into_owned();
    let values = |wanted: &str| -> Vec<String> {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(wanted))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect()
    };
    if request.headers.iter().any(|h| h.name.contains('_')) {
        return Parse::Ambiguous(text);
    }
    let (lengths, codings) = (values("content-length"), values("transfer-encoding"));
    let body = match (&lengths[..], &codings[..]) {
        ([], []) => Some((0, Vec::new())),
        ([length], []) if !length.is_empty() && length.bytes().all(|b| b.is_ascii_digit()) => {
            let length: usize = length.parse().unwrap();
            (wire.len() >= head + length).then(|| (length, wire[head..head + length].to_vec()))
        }
        ([], [coding]) if coding == "chunked" => match dechunk(&wire[head..]) {
            Ok(body) => body,
            Err(()) => return Parse::Ambiguous(text),
        },
        _ => return Parse::Ambiguous(text),
    };
    match body {
        None => Parse::Incomplete,
        Some((used, body)) => Parse::Whole {
            used: head + used,
            method: request.method.unwrap().to_owned(),
            target: request.path.unwrap().to_owned(),
            body,
        },
    }
}

/// A chunked body off the front of `wire`: the bytes it took and its data; `None` while it
/// is incomplete.
#[allow(clippy::type_complexity)]
fn dechunk(wire: &[u8]) -> Result<Option<(usize, Vec<u8>)>, ()> {
    let (mut at, mut body) = (0, Vec::new());
    loop {
        let Some(end) = wire[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&wire[at..at + end]).map_err(|_| ())?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        let size = usize::from_str_radix(size, 16).map_err(|_| ())?;
        at += end + 2;
        if size == 0 {
            return Ok((wire.len() >= at + 2).then(|| (at + 2, body)));
        }
        if wire.len() < at + size + 2 {
            return Ok(None);
        }
        if &wire[at + size..at + size + 2] != b"\r\n" {
            return Err(());
        }
        body.extend_from_slice(&wire[at..at + size]);
        at += size + 2;
    }
}

/// What a client got for one case: each answer's status and body, and whether the gateway
/// closed the connection after them.
#[derive(Debug, PartialEq, Eq)]
struct Answers {
    answers: Vec<(u16, String)>,
    closed: bool,
}

/// Writes `request` on a new connection and reads `expected` answers; then whether the
/// gateway closes the connection (when it still answers a request sent after them, it
/// did not).
async fn exchange(gateway: &TestGateway, request: &[u8], expected: usize) -> Answers {
    let authority = gateway.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut wire = Vec::new();
    let mut answers = Vec::new();
    let read = async {
        while answers.len() < expected {
            match take_answer(&mut wire) {
                Some(answer) => answers.push(answer),
                None => {
                    let mut piece = [0u8; 4096];
                    match stream.read(&mut piece).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => wire.extend_from_slice(&piece[..n]),
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the gateway answers or closes");
    // A connection still open answers a probe; a closed one ends.
    let _ = stream
        .write_all(b"GET /probe HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await;
    let mut rest = Vec::new();
    let probe = async {
        let mut piece = [0u8; 4096];
        loop {
            match stream.read(&mut piece).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => rest.extend_from_slice(&piece[..n]),
            }
            if rest.windows(4).any(|w| w == b"\r\n\r\n") {
                return false;
            }
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(10), probe)
        .await
        .expect("the probe is answered or the connection closed");
    Answers { answers, closed }
}

/// One response off the front of `wire` (its body framed by `Content-Length`), if whole.
fn take_answer(wire: &mut Vec<u8>) -> Option<(u16, String)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(wire).ok()? else {
        return None;
    };
    let length: usize = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |h| {
            std::str::from_utf8(h.value).unwrap().parse().unwrap()
        });
    if wire.len() < head + length {
        return None;
    }
    let status = response.code.unwrap();
    let body = String::from_utf8_lossy(&wire[head..head + length]).into_owned();
    wire.drain(..head + length);
    Some((status, body))
}

/// One case: the bytes a client sends, how many answers it waits for, the statuses they
/// must have, whether the connection must close, and what the upstream must have seen.
struct Case {
    name: &'static str,
    request: String,
    statuses: &'static [u16],
    closes: bool,
    upstream_sees: Vec<String>,
}

fn refused(name: &'static str, request: &str) -> Case {
    Case {
        name,
        request: request.to_owned(),
        statuses: &[400],
        closes: true,
        upstream_sees: Vec::new(),
    }
}

fn cases() -> Vec<Case> {
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: shop\r\n\r\n";
    vec![
        Case {
            name: "two equal Content-Length lines go on as one (RFC 9110 §8.6)",
            request: "POST /d HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello".to_owned(),
            statuses: &[200],
            closes: false,
            upstream_sees: vec!["POST /d hello".to_owned(), "GET /probe ".to_owned()],
        },
        Case {
            name: "two zero Content-Length lines on a request the own reader takes",
            request: "GET /d HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n".to_owned(),
            statuses: &[200],
            closes: false,
            upstream_sees: vec!["GET /d ".to_owned(), "GET /probe ".to_owned()],
        },
        refused(
            "two different Content-Length lines",
            "POST /d HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        refused(
            "a Content-Length list",
            "POST /d HTTP/1.1\r\nHost: shop\r\nContent-Length: 5, 6\r\n\r\nhello!",
        ),
        refused(
            "a Content-Length with a sign",
            "POST /d HTTP/1.1\r\nHost: shop\r\nContent-Length: +5\r\n\r\nhello",
        ),
        refused(
            "a header folded onto the next line (obs-fold)",
            "GET /d HTTP/1.1\r\nHost: shop\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        refused(
            "a folded Content-Length",
            "POST /d HTTP/1.1\r\nHost: shop\r\nContent-Length:\r\n 5\r\n\r\nhello",
        ),
        refused(
            "chunked on HTTP/1.0",
            "POST /d HTTP/1.0\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        refused(
            "a chunk size that is not hex",
            "POST /d HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        refused(
            "a negative chunk size",
            "POST /d HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        ),
        refused(
            "a chunk size past 64 bits",
            "POST /d HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        refused(
            "a chunk longer than its size",
            "POST /d HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        ),
        Case {
            name: "Content-Length with chunked: chunked wins, the length goes, the connection closes",
            request: "POST /d?n=1 HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_owned(),
            statuses: &[200],
            closes: true,
            upstream_sees: vec!["POST /d?n=1 hello".to_owned()],
        },
        Case {
            name: "bare LF line ends",
            request: "GET /d?n=1 HTTP/1.1\nHost: shop\nX-Kept: yes\n\n".to_owned(),
            statuses: &[200],
            closes: false,
            upstream_sees: vec!["GET /d?n=1 ".to_owned(), "GET /probe ".to_owned()],
        },
        Case {
            name: "a request inside a Content-Length body stays body",
            request: format!(
                "POST /d?n=1 HTTP/1.1\r\nHost: shop\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
            statuses: &[200],
            closes: false,
            upstream_sees: vec![
                format!("POST /d?n=1 {smuggled}"),
                "GET /probe ".to_owned(),
            ],
        },
        Case {
            name: "pipelined simple, then with a body, then simple",
            request: "GET /d?n=1 HTTP/1.1\r\nHost: shop\r\n\r\n\
                      POST /d?n=2 HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\nhello\
                      GET /d?n=3 HTTP/1.1\r\nHost: shop\r\n\r\n"
                .to_owned(),
            statuses: &[200, 200, 200],
            closes: false,
            upstream_sees: vec![
                "GET /d?n=1 ".to_owned(),
                "POST /d?n=2 hello".to_owned(),
                "GET /d?n=3 ".to_owned(),
                "GET /probe ".to_owned(),
            ],
        },
        Case {
            name: "pipelined simple, then chunked, then simple",
            request: "GET /d?n=1 HTTP/1.1\r\nHost: shop\r\n\r\n\
                      POST /d?n=2 HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
                      GET /d?n=3 HTTP/1.1\r\nHost: shop\r\n\r\n"
                .to_owned(),
            statuses: &[200, 200, 200],
            closes: false,
            upstream_sees: vec![
                "GET /d?n=1 ".to_owned(),
                "POST /d?n=2 hello".to_owned(),
                "GET /d?n=3 ".to_owned(),
                "GET /probe ".to_owned(),
            ],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_never_reaches_an_upstream_and_every_http_path_answers_alike() {
    let world = World::new().await;
    let mut gateways = Vec::new();
    for path in PATHS {
        let (url, seen) = recording_upstream().await;
        let mut settings = world.settings();
        settings.http = path;
        settings.legacy_url = Some(Upstream::parse("LEGACY_URL", &url).unwrap());
        gateways.push((path, world.gateway_with(settings).await, seen));
    }
    for case in cases() {
        let mut first: Option<Answers> = None;
        for (path, gateway, seen) in &gateways {
            seen.lock().unwrap().clear();
            let got = exchange(gateway, case.request.as_bytes(), case.statuses.len()).await;
            let what = format!("{} ({path:?}): {got:?}", case.name);
            let statuses: Vec<u16> = got.answers.iter().map(|(status, _)| *status).collect();
            assert_eq!(statuses, case.statuses, "{what}");
            assert_eq!(got.closed, case.closes, "{what}");
            if case.statuses.iter().all(|&status| status == 200) {
                // Answered in order: each body is its request's target.
                let targets: Vec<&str> = case
                    .upstream_sees
                    .iter()
                    .take(case.statuses.len())
                    .map(|seen| seen.split(' ').nth(1).unwrap())
                    .collect();
                let bodies: Vec<&str> = got.answers.iter().map(|(_, body)| body.as_str()).collect();
                assert_eq!(bodies, targets, "{what}");
            }
            // A refused connection may have carried part of a body upstream, never a whole
            // request; what arrived whole arrived as one framing.
            crate::support::eventually("the upstream has seen what it will", || async {
                seen.lock().unwrap().len() >= case.upstream_sees.len()
            })
            .await;
            assert_eq!(*seen.lock().unwrap(), case.upstream_sees, "{what}");
            match &first {
                None => first = Some(got),
                Some(first) => assert_eq!(&got, first, "{}: the paths differ", case.name),
            }
        }
    }
}
