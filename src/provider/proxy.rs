//! The HTTP CONNECT proxy of the APNs transport, from the environment as reqwest reads it for
//! the other vendors: `HTTPS_PROXY` (else `ALL_PROXY`, either case) names an `http://` proxy,
//! optionally with `user:password@`; `NO_PROXY` lists hosts that connect directly (`*`, a
//! domain and its subdomains, an IP address or a CIDR block).

use std::net::IpAddr;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest proxy answer head read before giving up.
const MAX_HEAD: usize = 8 * 1024;

/// Where to tunnel through, and which hosts go direct.
#[derive(Clone, Default, PartialEq)]
pub struct Proxy {
    /// `host:port` of the proxy.
    addr: String,
    /// `Proxy-Authorization` value, if the URL had credentials.
    auth: Option<String>,
    no_proxy: Vec<String>,
}

impl std::fmt::Debug for Proxy {
    /// Never prints the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl Proxy {
    /// The proxy the environment names, if any.
    pub fn from_env() -> Result<Option<Self>, String> {
        let var = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()));
        let Some(url) = var(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]) else { return Ok(None) };
        let no_proxy = var(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
        Self::parse(&url, &no_proxy).map(Some)
    }

    /// A proxy from its URL and a `NO_PROXY` list. Errors never repeat the URL: it may carry a
    /// password.
    pub fn parse(url: &str, no_proxy: &str) -> Result<Self, String> {
        const WHAT: &str = "the proxy URL (HTTPS_PROXY or ALL_PROXY)";
        let u = url::Url::parse(url).map_err(|e| format!("{WHAT}: {e}"))?;
        if u.scheme() != "http" {
            return Err(format!("{WHAT}: only http:// proxies are supported, not {}://", u.scheme()));
        }
        let host = match u.host() {
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            Some(h) => h.to_string(),
            None => return Err(format!("{WHAT}: no host")),
        };
        let addr = format!("{host}:{}", u.port().unwrap_or(80));
        let auth = (!u.username().is_empty()).then(|| {
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            let pair = format!("{}:{}", decode(u.username()), decode(u.password().unwrap_or("")));
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        });
        let no_proxy = no_proxy.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).collect();
        Ok(Self { addr, auth, no_proxy })
    }

    /// Whether `host` (a name or an address, IPv6 without brackets) is reached through the proxy.
    pub fn applies_to(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        !self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, bits)) = entry.split_once('/') {
                return ip
                    .zip(net.parse::<IpAddr>().ok())
                    .zip(bits.parse::<u32>().ok())
                    .is_some_and(|((ip, net), bits)| in_block(ip, net, bits));
            }
            if let (Some(ip), Ok(e)) = (ip, entry.parse::<IpAddr>()) {
                return ip == e;
            }
            let domain = entry.trim_start_matches('.');
            host == domain || host.ends_with(&format!(".{domain}"))
        })
    }

    /// A TCP connection to the proxy with a tunnel to `host:port` established.
    pub async fn tunnel(&self, host: &str, port: u16) -> Result<TcpStream, String> {
        let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let mut tcp = TcpStream::connect(&self.addr).await.map_err(|e| format!("proxy {}: {e}", self.addr))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &self.auth {
            head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await.map_err(|e| format!("proxy {}: {e}", self.addr))?;
        // Byte by byte up to the blank line: what follows belongs to the tunnel (TLS).
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            if answer.len() >= MAX_HEAD {
                return Err(format!("proxy {}: answer head too long", self.addr));
            }
            let mut byte = [0u8; 1];
            let n = tcp.read(&mut byte).await.map_err(|e| format!("proxy {}: {e}", self.addr))?;
            if n == 0 {
                return Err(format!("proxy {}: closed before answering CONNECT", self.addr));
            }
            answer.push(byte[0]);
        }
        let status_line = String::from_utf8_lossy(&answer);
        let status_line = status_line.lines().next().unwrap_or_default();
        let code = status_line.split_whitespace().nth(1);
        if !status_line.starts_with("HTTP/1.") || code != Some("200") {
            return Err(format!("proxy {} refused CONNECT {target}: {status_line}", self.addr));
        }
        Ok(tcp)
    }
}

/// Whether `ip` lies in the block `net/bits` (same address family only).
fn in_block(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_url_gives_address_and_basic_auth_and_only_http_is_taken() {
        let p = Proxy::parse("http://user:p%40ss@proxy.corp:3128", "").unwrap();
        assert_eq!(p.addr, "proxy.corp:3128");
        let basic = base64::engine::general_purpose::STANDARD.encode("user:p@ss");
        assert_eq!(p.auth, Some(format!("Basic {basic}")));
        assert_eq!(Proxy::parse("http://[::1]", "").unwrap().addr, "[::1]:80");
        assert_eq!(Proxy::parse("http://10.0.0.1:8080", "").unwrap().auth, None);
        assert!(Proxy::parse("https://proxy.corp:443", "").unwrap_err().contains("only http://"));
        assert!(Proxy::parse("not a url", "").is_err());
        let err = Proxy::parse("http://user:s3cret@proxy.corp:99999", "").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(!format!("{p:?}").contains(&basic), "{p:?}");
    }

    #[test]
    fn no_proxy_exempts_domains_with_their_subdomains_addresses_and_blocks() {
        let p =
            Proxy::parse("http://proxy:3128", " apple.com, .example.org,10.1.2.3, 192.168.0.0/16, fd00::/8 ,LOCALHOST")
                .unwrap();
        for direct in [
            "apple.com",
            "api.push.apple.com",
            "API.PUSH.APPLE.COM",
            "example.org",
            "a.example.org",
            "10.1.2.3",
            "192.168.7.9",
            "fd12::1",
            "localhost",
        ] {
            assert!(!p.applies_to(direct), "{direct} goes direct");
        }
        for proxied in
            ["notapple.com", "apple.com.evil", "10.1.2.4", "192.169.0.1", "fe80::1", "api.sandbox.push.apple.co"]
        {
            assert!(p.applies_to(proxied), "{proxied} goes through the proxy");
        }
        assert!(!Proxy::parse("http://proxy:3128", "*").unwrap().applies_to("api.push.apple.com"));
        assert!(Proxy::parse("http://proxy:3128", "").unwrap().applies_to("127.0.0.1"));
    }
}
