//! The testers' page (`picker_path`) in a real headless browser: Debian's chromium, driven through the DevTools protocol over a pipe.

use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};

use crate::app::{cmd_ok, configure, AppRepo};
use crate::util::{secs, wait_for, Root};

/// chromium with `--remote-debugging-pipe`: commands go in on its fd 3, answers and events come
/// out of its fd 4, each a JSON text ended by a NUL byte. Killed when dropped.
struct Browser {
    child: Child,
    to: File,
    from: BufReader<File>,
    next_id: u64,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn start(profile: &std::path::Path) -> Browser {
        let (in_r, in_w) = nix::unistd::pipe().unwrap();
        let (out_r, out_w) = nix::unistd::pipe().unwrap();
        let (cr, cw) = (in_r.as_raw_fd(), out_w.as_raw_fd());
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless=new",
            // As root chromium refuses its sandbox; the page is our own.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-pipe",
            "--window-size=1000,700",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: dup2 is async-signal-safe; the closure allocates nothing.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if nix::libc::dup2(cr, 3) < 0 || nix::libc::dup2(cw, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("chromium (apt-get install chromium; .ci/install-packages does)");
        drop((in_r, out_w));
        let mut b = Browser {
            child,
            to: File::from(in_w),
            from: BufReader::new(File::from(out_r)),
            next_id: 0,
            session: String::new(),
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b
    }

    /// Sends one command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// The same, with chromium's error as an error: a script evaluated while the page navigates
    /// away gets "Inspected target navigated or closed".
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            let mut buf = Vec::new();
            let n = self.from.read_until(0, &mut buf).unwrap();
            assert!(n > 0, "chromium closed its pipe");
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).unwrap();
            if v["id"] == json!(id) {
                return match v.get("error") {
                    Some(e) => Err(e.to_string()),
                    None => Ok(v["result"].clone()),
                };
            }
        }
    }

    /// A script's value in the page; Null while the page is navigating.
    fn eval(&mut self, js: &str) -> Value {
        self.try_eval(js).unwrap_or(Value::Null)
    }

    fn try_eval(&mut self, js: &str) -> Result<Value, String> {
        let r = self.try_call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        )?;
        Ok(r["result"]["value"].clone())
    }

    fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// Waits until the page's text contains `what`.
    fn sees(&mut self, what: &str) {
        wait_for(secs(20), &format!("the browser to show {what:?}"), || {
            let text =
                self.eval("document.readyState === 'complete' ? document.body.innerText : ''");
            let text = text.as_str().unwrap_or_default().to_string();
            if text.contains(what) {
                Ok(())
            } else {
                Err(text)
            }
        });
    }

    /// Clicks the element `selector` names, as a user would.
    fn click(&mut self, selector: &str) {
        let found = self.try_eval(&format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
            json!(selector)
        ));
        match found {
            Ok(v) => assert_eq!(v, json!(true), "no {selector} on the page"),
            // The click's navigation began before the answer: it was clicked.
            Err(e) => assert!(e.contains("navigated"), "clicking {selector}: {e}"),
        }
    }
}

/// Open the page, see the alternates and which one this browser is on, click one, see its
/// app; back on the page it says so; click back to production, see production. A screenshot
/// of the page is kept in cargo's test scratch directory.
#[test]
fn testers_pick_an_alternate_on_the_page_in_a_real_browser() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &["beta", "gamma"], 30);
    crate::app::git(&repo.dir, &["branch", "gamma"]);
    repo.commit("gamma", &[("BRANCH", "gamma")], "gamma");
    root.edit_etc("approuter.toml", |t| {
        format!("{t}picker_path = \"/approuter/alternates\"\n")
    });
    cmd_ok(&root, &["start"]);
    let page = format!("http://127.0.0.1:{}/approuter/alternates", ports.listen);
    // nginx answers it chunked (sub_filter): curl reads it.
    let curl = |cookie: &str| {
        let o = Command::new("curl")
            .args(["-sf", "--max-time", "10", "-b", cookie])
            .arg(&page)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let body = curl("");
    assert!(
        body.contains("This browser is on: <b id=\"current\">production</b>"),
        "{body}"
    );
    assert!(
        body.contains("<tr id=\"alternate-gamma\"><td>gamma</td><td>gamma</td>"),
        "{body}"
    );
    assert!(body.contains("class=\"up\">healthy"), "{body}");
    // A cookie naming something else, markup included, shows as production, never as itself.
    let body = curl("approuter_alt=<script>x</script>");
    assert!(!body.contains("<script>x"), "{body}");
    assert!(body.contains("<b id=\"current\">production</b>"), "{body}");
    // An alternate that stops answering says so at the next sync.
    cmd_ok(&root, &["stop", "gamma"]);
    cmd_ok(&root, &["sync"]);
    // nginx looks at the file again within a second (open_file_cache_valid).
    wait_for(secs(5), "the page to say gamma is not running", || {
        curl("").contains("<td>not running</td><td class=\"down\">not answering</td>")
    });
    cmd_ok(&root, &["start", "gamma"]);
    cmd_ok(&root, &["sync"]);

    let profile = root.path().join("chromium-profile");
    let mut b = Browser::start(&profile);
    b.goto(&page);
    b.sees("This browser is on: production");
    let text = b.eval("document.body.innerText");
    let text = text.as_str().unwrap();
    for want in ["beta", "gamma", "healthy"] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let shot = b.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = decode_base64(shot["data"].as_str().unwrap());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("picker.png");
    std::fs::write(&kept, &png).unwrap();
    eprintln!("screenshot of the testers' page: {}", kept.display());

    b.click("#alternate-beta a.use");
    b.sees("routed to beta");
    b.click("a[href='/']");
    b.sees("demo app: branch beta");
    b.goto(&page);
    b.sees("This browser is on: beta");
    b.click("#production");
    b.sees("routed to production");
    b.click("a[href='/']");
    b.sees("demo app: branch main");
    b.goto(&page);
    b.sees("This browser is on: production");
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    bytes
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |acc, &v| (acc << 6) | u32::from(v)) << (6 * (4 - c.len()));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.into_iter().take(c.len() - 1)
        })
        .collect()
}
