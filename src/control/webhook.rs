//! A webhook's URL, checked once (at config time) and taken apart for the alert thread: where to
//! connect, what to ask for, whether it is Discord's, and how to show it without its secret.
//! Pure: [`super::alert`] does the IO.

use hyper::Uri;

/// Longest webhook URL accepted (Discord's and Slack's are ~120 characters).
pub const MAX_WEBHOOK_LEN: usize = 2048;

/// A webhook URL: `http://` or `https://`, a host, no credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// As configured.
    pub url: String,
    pub https: bool,
    /// The host to resolve and (HTTPS) to name in SNI: no brackets around an IPv6 address.
    pub host: String,
    pub port: u16,
    /// The `Host` header: the URL's authority as written.
    pub authority: String,
    /// Path and query (at least `/`).
    pub path: String,
}

impl Webhook {
    pub fn parse(url: &str) -> Result<Webhook, String> {
        if url.len() > MAX_WEBHOOK_LEN {
            return Err(format!("longer than {MAX_WEBHOOK_LEN} characters"));
        }
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("{:?} is not an http:// or https:// URL", redact_str(url)))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("must start with http:// or https://".to_owned()),
        };
        let authority = uri.authority().ok_or("has no host")?;
        if authority.as_str().contains('@') {
            // A password in a config file that the status page names would be one more secret to
            // hide; webhooks carry theirs in the path.
            return Err("credentials in the URL are not supported".to_owned());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err("has no host".to_owned());
        }
        Ok(Webhook {
            url: url.to_owned(),
            https,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// Discord's webhooks (`discord.com`, `discordapp.com` and their subdomains such as
    /// `canary.`) take `{"content": …}`; everyone else (Slack, Mattermost, …) `{"text": …}`.
    pub fn is_discord(&self) -> bool {
        let h = self.host.to_ascii_lowercase();
        let h = h.trim_end_matches('.');
        ["discord.com", "discordapp.com"]
            .iter()
            .any(|d| h == *d || h.strip_suffix(d).is_some_and(|p| p.ends_with('.')))
    }

    /// The URL without its path: webhook paths are bearer secrets (anyone who has one can post),
    /// and the status page and the log are not the place for them.
    pub fn redacted(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/…", self.authority)
    }
}

/// What to show of a string that did not parse: its first characters up to the path.
fn redact_str(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => format!("{}/…", &url[..after_scheme + i]),
        None => url.chars().take(64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discord_slack_and_local_urls() {
        let d = Webhook::parse("https://discord.com/api/webhooks/123/secret").unwrap();
        assert!(d.https && d.is_discord());
        assert_eq!((d.host.as_str(), d.port), ("discord.com", 443));
        assert_eq!(d.path, "/api/webhooks/123/secret");
        assert_eq!(d.redacted(), "https://discord.com/…");
        for discord in [
            "https://discordapp.com/api/webhooks/1/x",
            "https://canary.discord.com/api/webhooks/1/x",
            "https://DISCORD.COM/api/webhooks/1/x",
        ] {
            assert!(Webhook::parse(discord).unwrap().is_discord(), "{discord}");
        }
        for other in [
            "https://hooks.slack.com/services/T/B/x",
            "https://notdiscord.com/x",
            "https://discord.com.evil.example/x",
        ] {
            assert!(!Webhook::parse(other).unwrap().is_discord(), "{other}");
        }
        let l = Webhook::parse("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert!(!l.https);
        assert_eq!((l.host.as_str(), l.port), ("127.0.0.1", 8080));
        assert_eq!(
            (l.authority.as_str(), l.path.as_str()),
            ("127.0.0.1:8080", "/hook?x=1")
        );
        let v6 = Webhook::parse("http://[::1]:9/").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.authority.as_str()),
            ("::1", "[::1]:9")
        );
        assert_eq!(Webhook::parse("http://example.org").unwrap().path, "/");
    }

    #[test]
    fn refused_urls_say_why_without_the_secret() {
        for (bad, why) in [
            ("ftp://example.org/x", "http"),
            ("discord.com/api/webhooks/1/secret", "http"),
            ("https://user:pw@example.org/x", "credentials"),
            ("https:///secret", "URL"),
            ("not a url", "URL"),
        ] {
            let e = Webhook::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
        assert!(Webhook::parse(&format!("https://x.org/{}", "a".repeat(MAX_WEBHOOK_LEN))).is_err());
    }
}
