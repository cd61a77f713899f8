//! `pushd demo`: the loopback mock vendors the demo config points at, with the demo keys
//! embedded in the binary so the demo runs from any folder. The keys in `config/demo/` are
//! test keys trusted only by these mocks.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::Settings;
use crate::mock_vendor::{serve_control, ControlHandle, MockApns, MockApnsConfig, MockFcm, MockFcmConfig, MockTls};

const APNS_KEY: &str = include_str!("../config/demo/apns-demo-key.p8");
const APNS_PUB: &str = include_str!("../config/demo/apns-demo-key.pub.pem");
const FCM_ACCOUNT: &str = include_str!("../config/demo/fcm-service-account.json");
const FCM_PUB: &str = include_str!("../config/demo/fcm-demo-key.pub.pem");

/// The running demo mocks.
pub struct DemoMocks {
    pub apns: MockApns,
    pub fcm: MockFcm,
    pub control: SocketAddr,
    _control: ControlHandle,
}

fn addr(what: &str, s: &str) -> anyhow::Result<SocketAddr> {
    s.parse().map_err(|_| anyhow::anyhow!("{what}: {s:?} is not an address like 127.0.0.1:8443"))
}

/// Writes the CA and demo keys to `data_dir` and starts mock APNs, mock FCM and the
/// inspection endpoint on the given addresses.
pub async fn start_mocks(data_dir: &str, apns: &str, fcm: &str, control: &str) -> anyhow::Result<DemoMocks> {
    let dir = Path::new(data_dir);
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("data_dir {}: {e}", dir.display()))?;
    let tls = Arc::new(MockTls::generate()?);
    std::fs::write(dir.join("mock-ca.pem"), &tls.ca_pem)?;
    std::fs::write(dir.join("apns-demo-key.p8"), APNS_KEY)?;
    std::fs::write(dir.join("fcm-service-account.json"), FCM_ACCOUNT)?;

    let mut a = MockApnsConfig::new("DEMOTEAM01", "DEMOKEY001", APNS_PUB, "com.example.im");
    a.addr = addr("--mock-apns", apns)?;
    a.tls = Some(tls.clone());
    a.clock = Arc::new(SystemClock);
    let apns = MockApns::start(a).await.map_err(|e| anyhow::anyhow!("mock APNs on {apns}: {e}"))?;

    let account: serde_json::Value = serde_json::from_str(FCM_ACCOUNT)?;
    let mut f = MockFcmConfig::new(
        account["project_id"].as_str().unwrap_or_default(),
        account["client_email"].as_str().unwrap_or_default(),
        FCM_PUB,
    );
    f.addr = addr("--mock-fcm", fcm)?;
    f.tls = Some(tls);
    f.clock = Arc::new(SystemClock);
    let fcm = MockFcm::start(f).await.map_err(|e| anyhow::anyhow!("mock FCM on {fcm}: {e}"))?;

    let (control, handle) = serve_control(addr("--mock-control", control)?, Some(apns.clone()), Some(fcm.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("mock control on {control}: {e}"))?;
    Ok(DemoMocks { apns, fcm, control, _control: handle })
}

impl DemoMocks {
    /// Points the demo credentials at wherever the mocks actually listen.
    pub fn apply(&self, loader: crate::config::Loader) -> crate::config::Loader {
        let s = |u: String| toml::Value::String(u);
        loader
            .set(&["credentials", "demo-apns", "endpoint"], s(self.apns.url().to_string()))
            .set(&["credentials", "demo-fcm", "endpoint"], s(self.fcm.url().to_string()))
            .set(&["credentials", "demo-fcm", "token_uri"], s(format!("{}token", self.fcm.url())))
    }

    /// Tells the person running the demo where everything is.
    pub fn print_banner(&self, settings: &Settings) {
        println!("pushd demo");
        println!("  gateway API   http://{}  (Authorization: Bearer demo-key)", settings.listen.gateway);
        println!("  operator      http://{}/metrics", settings.listen.operator);
        println!("  mock APNs     {}   credential demo-apns", self.apns.url());
        println!("  mock FCM      {}   credential demo-fcm", self.fcm.url());
        println!("  what the mocks received: curl http://{}/mock/apns/received", self.control);
    }
}
