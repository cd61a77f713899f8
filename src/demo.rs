//! `pushd demo` and `pushd mocks`: the loopback mock vendors the demo config points at, with
//! the demo keys embedded in the binary so the demo runs from any folder. The keys in
//! `config/demo/` are test keys trusted only by these mocks.
//!
//! `pushd demo` runs the mocks and pushd in one process. `pushd mocks` runs only the mocks and
//! writes [`DemoMocks::serve_config`], the config with which a `pushd serve` in another process
//! uses them (the load harness's target mode).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::raw::RawConfig;
use crate::config::Settings;
use crate::mock_vendor::honor::{MockHonor, MockHonorConfig};
use crate::mock_vendor::huawei::{MockHuawei, MockHuaweiConfig};
use crate::mock_vendor::meizu::{MockMeizu, MockMeizuConfig};
use crate::mock_vendor::oppo::{MockOppo, MockOppoConfig};
use crate::mock_vendor::vivo::{MockVivo, MockVivoConfig};
use crate::mock_vendor::xiaomi::{MockXiaomi, MockXiaomiConfig};
use crate::mock_vendor::{
    serve_mocks, ControlHandle, MockApns, MockApnsConfig, MockFcm, MockFcmConfig, MockServer, MockTls,
};

const APNS_KEY: &str = include_str!("../config/demo/apns-demo-key.p8");
const APNS_PUB: &str = include_str!("../config/demo/apns-demo-key.pub.pem");
const FCM_ACCOUNT: &str = include_str!("../config/demo/fcm-service-account.json");
const FCM_PUB: &str = include_str!("../config/demo/fcm-demo-key.pub.pem");

/// The running demo mocks.
pub struct DemoMocks {
    pub apns: MockApns,
    pub fcm: MockFcm,
    pub huawei: MockHuawei,
    pub honor: MockHonor,
    pub xiaomi: MockXiaomi,
    pub oppo: MockOppo,
    pub vivo: MockVivo,
    pub meizu: MockMeizu,
    pub control: SocketAddr,
    _control: ControlHandle,
}

fn addr(what: &str, s: &str) -> anyhow::Result<SocketAddr> {
    s.parse().map_err(|_| anyhow::anyhow!("{what}: {s:?} is not an address like 127.0.0.1:8443"))
}

/// A string field of a demo credential (its secrets live in config/demo.toml, once).
fn field(raw: &RawConfig, credential: &str, name: &str) -> anyhow::Result<String> {
    let value = raw
        .credentials
        .get(credential)
        .and_then(|c| c.vendor_fields.get(name))
        .ok_or_else(|| anyhow::anyhow!("credentials.{credential}.{name}: missing from the demo config"))?;
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Writes the CA and demo keys to `data_dir` and starts the eight mock vendors (APNs and FCM on
/// the given addresses, the Android ones on free loopback ports) and the inspection endpoint.
pub async fn start_mocks(raw: &RawConfig, apns: &str, fcm: &str, control: &str) -> anyhow::Result<DemoMocks> {
    let dir = Path::new(&raw.data_dir);
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
    f.tls = Some(tls.clone());
    f.clock = Arc::new(SystemClock);
    let fcm = MockFcm::start(f).await.map_err(|e| anyhow::anyhow!("mock FCM on {fcm}: {e}"))?;

    let clock: crate::clock::SharedClock = Arc::new(SystemClock);
    let mut c =
        MockHuaweiConfig::new(field(raw, "demo-huawei", "app_id")?, field(raw, "demo-huawei", "client_secret")?);
    (c.tls, c.clock) = (Some(tls.clone()), clock.clone());
    let huawei = MockHuawei::start(c).await?;
    let mut c = MockHonorConfig::new(
        field(raw, "demo-honor", "app_id")?,
        field(raw, "demo-honor", "client_id")?,
        field(raw, "demo-honor", "client_secret")?,
    );
    (c.tls, c.clock) = (Some(tls.clone()), clock.clone());
    let honor = MockHonor::start(c).await?;
    let mut c = MockXiaomiConfig::new(
        field(raw, "demo-xiaomi", "app_secret")?,
        field(raw, "demo-xiaomi", "package_name")?,
        field(raw, "demo-xiaomi", "channel_id")?,
    );
    (c.tls, c.clock) = (Some(tls.clone()), clock.clone());
    let xiaomi = MockXiaomi::start(c).await?;
    let mut c = MockOppoConfig::new(field(raw, "demo-oppo", "app_key")?, field(raw, "demo-oppo", "master_secret")?);
    (c.tls, c.clock) = (Some(tls.clone()), clock.clone());
    let oppo = MockOppo::start(c).await?;
    let vivo_id: u64 = field(raw, "demo-vivo", "app_id")?.parse()?;
    let mut c =
        MockVivoConfig::new(vivo_id, field(raw, "demo-vivo", "app_key")?, field(raw, "demo-vivo", "app_secret")?);
    (c.tls, c.clock) = (Some(tls.clone()), clock.clone());
    let vivo = MockVivo::start(c).await?;
    let mut c = MockMeizuConfig::new(field(raw, "demo-meizu", "app_id")?, field(raw, "demo-meizu", "app_secret")?);
    (c.tls, c.clock) = (Some(tls), clock);
    let meizu = MockMeizu::start(c).await?;

    let all: Vec<MockServer> = vec![
        apns.clone().into(),
        fcm.clone().into(),
        huawei.clone().into(),
        honor.clone().into(),
        xiaomi.clone().into(),
        oppo.clone().into(),
        vivo.clone().into(),
        meizu.clone().into(),
    ];
    let (control, handle) = serve_mocks(addr("--mock-control", control)?, all)
        .await
        .map_err(|e| anyhow::anyhow!("mock control on {control}: {e}"))?;
    Ok(DemoMocks { apns, fcm, huawei, honor, xiaomi, oppo, vivo, meizu, control, _control: handle })
}

impl DemoMocks {
    /// Points the demo credentials at wherever the mocks actually listen.
    pub fn apply(&self, loader: crate::config::Loader) -> crate::config::Loader {
        let s = |u: String| toml::Value::String(u);
        loader
            .set(&["credentials", "demo-apns", "endpoint"], s(self.apns.url().to_string()))
            .set(&["credentials", "demo-fcm", "endpoint"], s(self.fcm.url().to_string()))
            .set(&["credentials", "demo-fcm", "token_uri"], s(format!("{}token", self.fcm.url())))
            .set(&["credentials", "demo-huawei", "token_url"], s(self.huawei.token_url().to_string()))
            .set(&["credentials", "demo-huawei", "send_url"], s(self.huawei.url().to_string()))
            .set(&["credentials", "demo-honor", "token_url"], s(self.honor.token_url().to_string()))
            .set(&["credentials", "demo-honor", "send_url"], s(self.honor.url().to_string()))
            .set(&["credentials", "demo-xiaomi", "endpoint"], s(self.xiaomi.url().to_string()))
            .set(&["credentials", "demo-oppo", "endpoint"], s(self.oppo.url().to_string()))
            .set(&["credentials", "demo-vivo", "endpoint"], s(self.vivo.url().to_string()))
            .set(&["credentials", "demo-meizu", "endpoint"], s(self.meizu.url().to_string()))
    }

    /// A complete config for `pushd serve --config FILE` against these mocks: `loader` (the demo
    /// config, `data_dir` set where [`start_mocks`] wrote the CA and keys) pointed at the mocks,
    /// defaults included. `{data_dir}` in credential fields is replaced by the folder itself, so
    /// the file finds the CA and keys from any working directory, and a `pushd serve --data-dir
    /// elsewhere` moves only pushd's store. Give an absolute `data_dir` for that.
    pub fn serve_config(&self, loader: crate::config::Loader) -> anyhow::Result<String> {
        let text = self.apply(loader).to_toml_string();
        let mut doc: toml::Table = toml::from_str(&text)?;
        let dir = match doc.get("data_dir") {
            Some(toml::Value::String(dir)) => dir.clone(),
            _ => anyhow::bail!("data_dir: missing from the demo config"),
        };
        if let Some(credentials) = doc.get_mut("credentials") {
            expand_data_dir(credentials, &dir);
        }
        Ok(format!(
            "# Written by `pushd mocks` (pid {}): the demo config, pointed at its mock vendors.\n\
             # Run: pushd serve --config <this file>. The mocks' CA changes at each start of\n\
             # `pushd mocks`: restart pushd after restarting them.\n\n{}",
            std::process::id(),
            toml::to_string(&doc)?
        ))
    }

    /// Tells the person running `pushd mocks` where the mocks are and how to use them.
    pub fn print_mocks_banner(&self, config: &Path) {
        println!("pushd mocks");
        println!("  mock APNs     {}   credential demo-apns", self.apns.url());
        println!("  mock FCM      {}   credential demo-fcm", self.fcm.url());
        println!("  mock Huawei, Honor, Xiaomi, OPPO, vivo, Meizu on loopback: credentials demo-huawei … demo-meizu");
        println!("  control       http://{}/mock  (…/<vendor>/received, …/process)", self.control);
        println!("  config        {}", config.display());
        println!("run: pushd serve --config {}", config.display());
    }

    /// Tells the person running the demo where everything is.
    pub fn print_banner(&self, settings: &Settings) {
        println!("pushd demo");
        println!("  gateway API   http://{}  (Authorization: Bearer demo-key)", settings.listen.gateway);
        println!("  operator      http://{}/metrics", settings.listen.operator);
        println!("  mock APNs     {}   credential demo-apns", self.apns.url());
        println!("  mock FCM      {}   credential demo-fcm", self.fcm.url());
        println!("  mock Huawei, Honor, Xiaomi, OPPO, vivo, Meizu on loopback: credentials demo-huawei … demo-meizu");
        println!("  what the mocks received: curl http://{}/mock/<vendor>/received", self.control);
    }
}

/// Replaces `{data_dir}` with `dir` in every string of `value`, tables and arrays included.
fn expand_data_dir(value: &mut toml::Value, dir: &str) {
    match value {
        toml::Value::String(s) if s.contains("{data_dir}") => *s = s.replace("{data_dir}", dir),
        toml::Value::Array(items) => items.iter_mut().for_each(|v| expand_data_dir(v, dir)),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| expand_data_dir(v, dir)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Loader, DEMO_TOML};

    #[tokio::test]
    async fn the_written_config_validates_from_anywhere_and_points_at_the_mocks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data").display().to_string();
        let loader = Loader::new()
            .layer_str("config/demo.toml", DEMO_TOML)
            .expect("demo config parses")
            .set(&["data_dir"], toml::Value::String(data_dir.clone()));
        let raw = loader.raw().expect("raw config");
        let mocks = start_mocks(&raw, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0").await.expect("mocks start");

        let text = mocks.serve_config(loader).expect("config");

        let settings = Loader::new().layer_str("written", &text).and_then(|l| l.settings());
        let settings = settings.unwrap_or_else(|e| panic!("the written config validates: {e}\n{text}"));
        assert_eq!(settings.credentials.len(), 8);
        assert_eq!(settings.data_dir, std::path::PathBuf::from(&data_dir));
        assert!(!text.contains("{data_dir}"), "placeholders resolved:\n{text}");
        assert!(text.contains(&format!("\"{data_dir}/mock-ca.pem\"")), "{text}");
        for url in [mocks.apns.url(), mocks.fcm.url(), mocks.huawei.url(), mocks.meizu.url()] {
            assert!(text.contains(url.as_str()), "{url} missing:\n{text}");
        }
    }
}
