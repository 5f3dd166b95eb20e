//! Writing an answer on a downstream connection: the head, then the body by its length or
//! chunked, small pieces joined into one write.

use std::{io, pin::Pin, rc::Rc, time::SystemTime};

use axum::{
    http::{StatusCode, header},
    response::Response,
};
use http_body_util::BodyExt as _;
use hyper::body::Body as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::http1::upstream::{COALESCE_BYTES, poll_now, put_header};

/// as it is, not copied. While the body has nothing to send, `gone` is watched: a client that
/// left ends the answer (a quiet event stream would otherwise hold its place for ever).
pub(super) async fn write_response<W: AsyncWrite + Unpin>(
    stream: &mut W,
    out: &mut Vec<u8>,
    response: Response,
    head_only: bool,
    mut gone: Pin<&mut impl Future<Output = ()>>,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let (mut declared, mut dated, mut keep_alive) = (None, false, true);
    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING {
            // The body is framed here.
            continue;
        }
        if name == header::CONTENT_LENGTH {
            match value.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
                Some(length) if declared.is_none_or(|d| d == length) => declared = Some(length),
                _ => continue,
            }
        }
        dated |= name == header::DATE;
        if name == header::CONNECTION && value.as_bytes().eq_ignore_ascii_case(b"close") {
            keep_alive = false;
        }
        put_header(out, name.as_str(), value.as_bytes());
    }
    if !dated {
        put_header(out, "date", http_date().as_bytes());
    }
    let bodiless = head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        out.extend_from_slice(b"\r\n");
        stream.write_all(out).await?;
        return Ok(keep_alive);
    }
    let length = declared.or_else(|| {
        let exact = body.size_hint().exact()?;
        put_header(out, "content-length", exact.to_string().as_bytes());
        Some(exact)
    });
    if length.is_none() {
        put_header(out, "transfer-encoding", b"chunked");
    }
    out.extend_from_slice(b"\r\n");

    let mut written = 0u64;
    let complete = loop {
        let frame = match poll_now(&mut body) {
            Some(frame) => frame,
            None => {
                flush(stream, out).await?;
                tokio::select! {
                    biased;
                    frame = body.frame() => frame,
                    () = gone.as_mut() => {
                        return Err(io::ErrorKind::ConnectionAborted.into());
                    }
                }
            }
        };
        let mut data = match frame {
            None => break true,
            // The body failed (its upstream went away): what was sent is all there is, and
            // the connection cannot say so but by closing.
            Some(Err(_)) => break false,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if let Some(length) = length
            && written + data.len() as u64 > length
        {
            // More than the head declared: the rest cannot be sent on this connection.
            data.truncate(usize::try_from(length - written).unwrap_or(0));
            if !data.is_empty() {
                flush(stream, out).await?;
                stream.write_all(&data).await?;
            }
            break false;
        }
        written += data.len() as u64;
        if length.is_none() {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        if out.len() + data.len() <= COALESCE_BYTES {
            out.extend_from_slice(&data);
        } else {
            flush(stream, out).await?;
            stream.write_all(&data).await?;
        }
        if length.is_none() {
            out.extend_from_slice(b"\r\n");
        }
    };
    if complete && length.is_none() {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    flush(stream, out).await?;
    Ok(keep_alive && complete && length.is_none_or(|length| length == written))
}

async fn flush<W: AsyncWrite + Unpin>(stream: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Now as an HTTP date, formatted once a second on each thread.
pub(super) fn http_date() -> Rc<str> {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, Rc<str>)> = std::cell::RefCell::new((0, "".into()));
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, date)| {
        if *at != second || date.is_empty() {
            *at = second;
            *date = httpdate::fmt_http_date(now).into();
        }
        date.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::pin::pin;

    use axum::body::{Body, Bytes};

    async fn written(response: Response, head_only: bool) -> (String, bool) {
        let (mut wire, mut out) = (Vec::new(), Vec::new());
        let still_there = pin!(std::future::pending());
        let reusable = write_response(&mut wire, &mut out, response, head_only, still_there)
            .await
            .unwrap();
        (String::from_utf8(wire).unwrap(), reusable)
    }

    fn streamed(pieces: Vec<Result<&'static str, io::Error>>) -> Body {
        Body::from_stream(futures_util::stream::iter(
            pieces.into_iter().map(|piece| piece.map(Bytes::from)),
        ))
    }

    #[tokio::test]
    async fn a_body_of_known_size_gets_its_length_and_a_date() {
        let response = Response::builder()
            .status(StatusCode::CREATED)
            .header("content-type", "application/json")
            .body(Body::from("{\"ok\":true}"))
            .unwrap();
        let (wire, reusable) = written(response, false).await;
        let (head, body) = wire.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("HTTP/1.1 201 Created"));
        let mut lines: Vec<&str> = lines.collect();
        lines.sort_unstable();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0], "content-length: 11");
        assert_eq!(lines[1], "content-type: application/json");
        assert!(lines[2].starts_with("date: ") && lines[2].ends_with(" GMT"));
        assert_eq!(body, "{\"ok\":true}");
        assert!(reusable);
    }

    #[tokio::test]
    async fn a_body_of_unknown_size_is_chunked_and_its_date_kept() {
        let response = Response::builder()
            .header("date", "Tue, 01 Dec 2026 10:00:00 GMT")
            .header("transfer-encoding", "gzip, chunked")
            .body(streamed(vec![Ok("ab"), Ok(""), Ok("cde")]))
            .unwrap();
        let (wire, reusable) = written(response, false).await;
        assert_eq!(
            wire,
            "HTTP/1.1 200 OK\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\
             transfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
        );
        assert!(reusable);
    }

    #[tokio::test]
    async fn a_large_piece_is_written_whole_after_the_head() {
        let large = "x".repeat(3 * COALESCE_BYTES);
        let (wire, reusable) = written(Response::new(Body::from(large.clone())), false).await;
        assert!(wire.ends_with(&format!("content-length: {}\r\n\r\n{large}", large.len())));
        assert!(reusable);
    }

    #[tokio::test]
    async fn a_head_answer_or_a_no_content_carries_no_body() {
        let response = Response::builder()
            .header("content-length", "11")
            .body(Body::from("{\"ok\":true}"))
            .unwrap();
        let (wire, reusable) = written(response, true).await;
        assert!(wire.contains("\r\ncontent-length: 11\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\n"), "{wire}");
        assert!(reusable);

        let response = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .unwrap();
        let (wire, _) = written(response, false).await;
        assert!(wire.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(!wire.contains("content-length") && !wire.contains("transfer-encoding"));
        assert!(wire.ends_with("\r\n\r\n"));
    }

    #[tokio::test]
    async fn a_body_that_fails_or_falls_short_closes_the_connection() {
        let failing = streamed(vec![Ok("ab"), Err(io::Error::other("upstream gone"))]);
        let (wire, reusable) = written(Response::new(failing), false).await;
        assert!(
            wire.ends_with("\r\n\r\n2\r\nab\r\n"),
            "no last chunk: {wire}"
        );
        assert!(!reusable);

        let short = Response::builder()
            .header("content-length", "10")
            .body(streamed(vec![Ok("abc")]))
            .unwrap();
        let (wire, reusable) = written(short, false).await;
        assert!(wire.contains("\r\ncontent-length: 10\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\nabc"), "{wire}");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn a_body_longer_than_its_length_is_cut_there_and_closes() {
        let long = Response::builder()
            .header("content-length", "4")
            .body(streamed(vec![Ok("abc"), Ok("def")]))
            .unwrap();
        let (wire, reusable) = written(long, false).await;
        assert!(wire.ends_with("\r\n\r\nabcd"), "{wire}");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn a_response_that_says_close_closes() {
        let response = Response::builder()
            .header("connection", "close")
            .body(Body::empty())
            .unwrap();
        let (wire, reusable) = written(response, false).await;
        assert!(wire.contains("connection: close\r\n"));
        assert!(!reusable);
    }
}
