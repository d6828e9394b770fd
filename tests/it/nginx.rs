//! nginx as a web application expects it: uploads, slow answers and idle WebSockets within approuter.toml's limits, gzip, and the operator's snippets, checked with `nginx -t` before they are loaded.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::app::{self, cmd_ok, get, out, read_response, started, tunnel, Resp};
use crate::util::one_line_error;

/// One request with the given extra header lines, on a connection of its own.
fn request(port: u16, head: &str, body: &[u8]) -> Resp {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s);
    r.get_mut().write_all(head.as_bytes()).unwrap();
    r.get_mut().write_all(body).unwrap();
    read_response(&mut r).unwrap().expect("an answer")
}

fn post(port: u16, len: usize) -> Resp {
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s);
    r.get_mut().write_all(head.as_bytes()).unwrap();
    // nginx may answer 413 before the body is sent, and close: what it says is what counts.
    let chunk = vec![b'u'; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        if r.get_mut().write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
    read_response(&mut r).unwrap().expect("an answer")
}

fn echoes(r: &mut BufReader<TcpStream>, what: &[u8]) -> Result<(), String> {
    r.get_mut().write_all(what).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; what.len()];
    r.read_exact(&mut buf).map_err(|e| e.to_string())?;
    (buf == what)
        .then_some(())
        .ok_or_else(|| String::from_utf8_lossy(&buf).into_owned())
}

/// The defaults: a 20 MB upload passes (nginx's own limit is 1 MB), a WebSocket idle for 65 s
/// still carries data (nginx's own timeout closes it at 60 s), text answers are gzipped. Then
/// the settings apply: a smaller body limit refuses the upload with 413.
#[test]
fn uploads_idle_websockets_and_gzip_within_the_settings() {
    let (root, _repo, ports) = started(&[]);
    let r = post(ports.listen, 20 << 20);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, format!("received {} bytes\n", 20 << 20));

    // /headers echoes the request's headers: a long one makes the answer worth compressing.
    let long = "x".repeat(4000);
    let r = request(
        ports.listen,
        &format!("GET /headers HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nX-Long: {long}\r\nConnection: close\r\n\r\n"),
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        r.headers
    );
    assert!(r.body.len() < 1000, "{} bytes", r.body.len());

    let mut ws = tunnel(ports.listen, "");
    echoes(&mut ws, b"before").unwrap();
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(80)))
        .unwrap();
    // The idle time is the scenario itself, not a wait for something to happen.
    std::thread::sleep(Duration::from_secs(65));
    echoes(&mut ws, b"after 65 s idle").unwrap();

    root.edit_etc("approuter.toml", |t| {
        format!("{t}client_max_body_size = \"1m\"\ngzip = false\nproxy_read_timeout_secs = 2\n")
    });
    cmd_ok(&root, &["generate"]);
    let r = post(ports.listen, 2 << 20);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(post(ports.listen, 1000).status, 200);
    let r = request(
        ports.listen,
        &format!("GET /headers HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nX-Long: {long}\r\nConnection: close\r\n\r\n"),
        b"",
    );
    assert_eq!(r.header("content-encoding"), None);
    // An idle WebSocket is closed after proxy_read_timeout_secs.
    let mut ws = tunnel(ports.listen, "");
    echoes(&mut ws, b"before").unwrap();
    let mut rest = Vec::new();
    let started = std::time::Instant::now();
    let _ = ws.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "closed after {took:?}"
    );
}

/// Snippets at both levels are loaded; a broken one is named with its line, never loaded, and
/// what ran before keeps running.
#[test]
fn snippets_are_included_and_a_broken_one_is_never_loaded() {
    let (root, _repo, ports) = started(&[]);
    root.write_etc(
        "nginx/http.d/probe.conf",
        "# a variable the server-level snippet answers with\nmap $http_x_probe $approuter_test_probe {\n    default \"none\";\n    a \"from the http level\";\n}\n",
    );
    root.write_etc(
        "nginx/server.d/extra.conf",
        "location = /snippet {\n    default_type text/plain;\n    return 200 \"$approuter_test_probe\\n\";\n}\n",
    );
    root.write_etc("nginx/server.d/notes.txt", "not a .conf: not included\n");
    let text = cmd_ok(&root, &["generate"]);
    assert!(text.contains("updated nginx configuration"), "{text}");
    let probe = |value: &str| {
        request(
            ports.listen,
            &format!(
                "GET /snippet HTTP/1.1\r\nHost: x\r\nX-Probe: {value}\r\nConnection: close\r\n\r\n"
            ),
            b"",
        )
    };
    let r = probe("a");
    assert_eq!((r.status, r.body.as_str()), (200, "from the http level\n"));
    assert_eq!(probe("b").body, "none\n");
    assert_eq!(app::page(ports.listen, None).1, "instance1");

    // Broken on its third line: refused with that file and line, nothing written or loaded.
    let gathered = root.var("nginx/snippets-server.conf");
    let before = std::fs::read(&gathered).unwrap();
    root.write_etc(
        "nginx/server.d/zz-broken.conf",
        "# a typo\n\nadd_headr X-Oops yes;\n",
    );
    for cmd in [&["generate"][..], &["sync"][..]] {
        let o = root.cmd(cmd).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{cmd:?}: {}", out(&o));
        let err = one_line_error(&o);
        let broken = root.etc("nginx/server.d/zz-broken.conf");
        assert!(
            err.contains(&format!(
                "unknown directive \"add_headr\" in {}:3",
                broken.display()
            )),
            "{cmd:?}: {err}"
        );
        assert!(err.contains("nothing was loaded"), "{err}");
    }
    assert_eq!(std::fs::read(&gathered).unwrap(), before);
    assert_eq!(
        probe("a").body,
        "from the http level\n",
        "the loaded configuration is the one before"
    );
    assert_eq!(app::page(ports.listen, None).1, "instance1");

    // Fixed: loaded.
    root.write_etc(
        "nginx/server.d/zz-broken.conf",
        "location = /fixed {\n    return 200 \"fixed\\n\";\n}\n",
    );
    cmd_ok(&root, &["generate"]);
    assert_eq!(get(ports.listen, "/fixed", None).unwrap().body, "fixed\n");

    // A password on the whole site, as docs/configuration.md shows it: a client from another
    // address needs it; approuter's own checks through nginx (from 127.0.0.1) pass, so sync
    // still sees production answer.
    root.write_etc("nginx/htpasswd", "tester:{PLAIN}secret\n");
    root.write_etc(
        "nginx/server.d/auth.conf",
        &format!(
            "satisfy any;\nallow 127.0.0.1;\ndeny all;\nauth_basic \"staging\";\nauth_basic_user_file {};\n",
            root.etc("nginx/htpasswd").display()
        ),
    );
    cmd_ok(&root, &["generate"]);
    let code = |extra: &[&str]| {
        let url = format!("http://127.0.0.1:{}/", ports.listen);
        let o = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(["--interface", "127.0.0.2"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(code(&[]), "401");
    assert_eq!(code(&["-u", "tester:wrong"]), "401");
    assert_eq!(code(&["-u", "tester:secret"]), "200");
    cmd_ok(&root, &["sync"]);
}
