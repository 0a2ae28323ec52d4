//! What a listener answers: a [`Resource`] (status, headers, one body, its ETag and a gzip copy
//! made at most once), shared by `Arc` between every request that gets it, and the choice of
//! representation per request (`304`, gzip, HEAD).

use super::limits::MIN_GZIP_BYTES;
use super::request;
use bytes::Bytes;
use std::hash::Hasher;
use tokio::sync::OnceCell;

/// `Cache-Control` of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// Operator answers: always fresh.
    NoStore,
    /// Public lists: cacheable by anyone for this many seconds (the lists' refresh).
    Public(u64),
}

/// Headers a resource adds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    /// `Access-Control-Allow-Origin: *`: a server-browser website on another origin may read it.
    pub cors: bool,
    /// A `Content-Security-Policy` (the pages).
    pub csp: Option<&'static str>,
    /// `Allow: GET, HEAD` (a 405).
    pub allow: bool,
}

/// One answer, built once and shared.
#[derive(Debug)]
pub struct Resource {
    pub status: u16,
    pub content_type: &'static str,
    pub cache: Cache,
    /// Quoted strong ETag, if the resource has one.
    pub etag: Option<String>,
    pub extra: Extra,
    pub body: Bytes,
    /// The body gzipped, made the first time a client asks for it.
    gz: OnceCell<Bytes>,
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=utf-8";
pub const JS: &str = "text/javascript; charset=utf-8";

/// A quoted ETag of `body`: 64 bits of SipHash, in hex.
pub fn etag_of(body: &[u8]) -> String {
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x6d75_7374, 0x6572_6574);
    h.write(body);
    format!("\"{:016x}\"", h.finish())
}

impl Resource {
    pub fn new(status: u16, content_type: &'static str, cache: Cache, body: Bytes) -> Resource {
        Resource {
            status,
            content_type,
            cache,
            etag: None,
            extra: Extra::default(),
            body,
            gz: OnceCell::new(),
        }
    }

    /// With an ETag of its body.
    pub fn tagged(mut self) -> Resource {
        self.etag = Some(etag_of(&self.body));
        self
    }

    pub fn with(mut self, extra: Extra) -> Resource {
        self.extra = extra;
        self
    }

    pub fn text(status: u16, body: impl Into<Bytes>) -> Resource {
        Resource::new(status, TEXT, Cache::NoStore, body.into())
    }

    /// The gzip representation's ETag.
    pub fn gz_etag(&self) -> Option<String> {
        self.etag
            .as_deref()
            .map(|e| format!("{}-gz\"", e.trim_end_matches('"')))
    }

    /// Whether gzip is worth offering for this body.
    pub fn compressible(&self) -> bool {
        self.status == 200 && self.body.len() >= MIN_GZIP_BYTES
    }

    /// The gzip copy, compressed once on the blocking pool (never on the runtime's thread).
    pub async fn gzipped(&self) -> Option<Bytes> {
        let body = self.body.clone();
        self.gz
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || gzip(&body))
                    .await
                    .map_err(|_| ())
            })
            .await
            .ok()
            .cloned()
    }
}

/// `body` gzipped (fast level: lists are re-made every refresh).
pub fn gzip(body: &[u8]) -> Bytes {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = e.write_all(body);
    Bytes::from(e.finish().unwrap_or_default())
}

/// What the request asked for that changes the representation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wants<'a> {
    pub head_only: bool,
    pub if_none_match: Option<&'a [u8]>,
    pub accept_encoding: Option<&'a [u8]>,
}

/// The representation chosen for one request.
#[derive(Debug)]
pub struct Chosen {
    pub status: u16,
    pub gzip: bool,
    pub etag: Option<String>,
    /// The body to send (empty for HEAD and 304, but `content_length` still says the size for HEAD).
    pub body: Bytes,
    pub content_length: usize,
}

/// Picks `304`, gzip or identity for a request.
pub async fn choose(r: &Resource, w: Wants<'_>) -> Chosen {
    let gz_ok = r.compressible() && w.accept_encoding.is_some_and(request::accepts_gzip);
    let gz_etag = r.gz_etag();
    if r.status == 200
        && let (Some(inm), Some(etag)) = (w.if_none_match, r.etag.as_deref())
    {
        let tags: Vec<&str> = std::iter::once(etag).chain(gz_etag.as_deref()).collect();
        if request::none_match(inm, &tags) {
            return Chosen {
                status: 304,
                gzip: false,
                etag: if gz_ok { gz_etag } else { r.etag.clone() },
                body: Bytes::new(),
                content_length: 0,
            };
        }
    }
    let (body, gzip, etag) = match gz_ok {
        true => match r.gzipped().await {
            Some(b) => (b, true, gz_etag),
            None => (r.body.clone(), false, r.etag.clone()),
        },
        false => (r.body.clone(), false, r.etag.clone()),
    };
    let content_length = body.len();
    Chosen {
        status: r.status,
        gzip,
        etag,
        body: if w.head_only { Bytes::new() } else { body },
        content_length,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn etags_304s_and_gzip() {
        let body = Bytes::from("ip 192.0.2.1:27015\n".repeat(100));
        let r = Resource::new(200, TEXT, Cache::Public(5), body.clone()).tagged();
        let etag = r.etag.clone().unwrap();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 18);
        assert_eq!(etag, etag_of(&body), "the same bytes, the same tag");

        let plain = block(choose(&r, Wants::default()));
        assert_eq!(
            (plain.status, plain.gzip, plain.body.clone()),
            (200, false, body.clone())
        );

        let gz = block(choose(
            &r,
            Wants {
                accept_encoding: Some(b"gzip"),
                ..Default::default()
            },
        ));
        assert!(gz.gzip);
        assert_eq!(gz.etag, r.gz_etag());
        let mut d = flate2::read::GzDecoder::new(&gz.body[..]);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut back).unwrap();
        assert_eq!(back, body);

        for tag in [etag.as_str(), r.gz_etag().unwrap().as_str()] {
            let c = block(choose(
                &r,
                Wants {
                    if_none_match: Some(tag.as_bytes()),
                    ..Default::default()
                },
            ));
            assert_eq!((c.status, c.body.len()), (304, 0));
        }
        let stale = block(choose(
            &r,
            Wants {
                if_none_match: Some(b"\"0000000000000000\""),
                head_only: true,
                ..Default::default()
            },
        ));
        assert_eq!(
            (stale.status, stale.body.len(), stale.content_length),
            (200, 0, body.len())
        );
        // Small bodies are not compressed.
        let small = Resource::new(200, TEXT, Cache::NoStore, Bytes::from_static(b"ok\n"));
        let c = block(choose(
            &small,
            Wants {
                accept_encoding: Some(b"gzip"),
                ..Default::default()
            },
        ));
        assert!(!c.gzip);
    }
}
