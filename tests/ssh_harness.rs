//! The SSH layer and `kubeforge status`/`exec` against real hosts (harness nodes with a real
//! OpenSSH server): host-key verification, authentication, sudo, bastions, dead links, SFTP.

mod common;

use common::{Harness, Healer, Poll, inventory, kubeforge, poll_for, serial, text, wait_for};
use std::path::Path;
use std::time::{Duration, Instant};

const V: &str = "1.33.5";

fn ssh_block(h: &Harness, known_hosts: &Path, key: &Path) -> String {
    let _ = h;
    format!(
        "    keyPath: {}\n    knownHosts: {}\n    config: none\n",
        key.display(),
        known_hosts.display()
    )
}

fn three(h: &Harness, dir: &Path, known_hosts: &Path) -> std::path::PathBuf {
    inventory(
        dir,
        "h3",
        V,
        &[(1, "control-plane"), (2, "worker"), (3, "worker")],
        &ssh_block(h, known_hosts, &h.key()),
        "",
    )
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn status_reports_facts_that_match_the_hosts() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    let dir = tempfile::tempdir().unwrap();
    let inv = three(&h, dir.path(), &h.known_hosts());
    let out = kubeforge(&["status", "-f", inv.to_str().unwrap(), "-o", "json"], &[]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    for (i, host) in hosts.iter().enumerate() {
        let n = i + 1;
        let f = &host["facts"];
        assert_eq!(host["reachable"], true);
        assert_eq!(f["hostname"], h.sh(n, "hostname").trim());
        assert_eq!(f["machine_id"], h.sh(n, "cat /etc/machine-id").trim());
        assert_eq!(f["kernel"], h.sh(n, "uname -r").trim());
        assert_eq!(
            f["cpus"].as_u64().unwrap().to_string(),
            h.sh(n, "nproc").trim()
        );
        assert_eq!(f["os_id"], "debian");
        assert_eq!(
            f["os_version"],
            h.sh(n, ". /etc/os-release; echo $VERSION_ID").trim()
        );
        assert_eq!(f["arch"], "amd64");
        assert_eq!(f["cgroup_version"], 1, "harness nodes have cgroup v1 only");
        assert!(
            f["listening_ports"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(22))
        );
        assert!(
            f["clock_offset_ms"].as_i64().unwrap().abs() < 1000,
            "one kernel clock"
        );
        assert_eq!(f["kernel_features"]["br_netfilter"], "builtin");
    }
    // the text table, and a port that preflight must flag
    h.sh(2, "nohup python3 -m http.server 10250 >/dev/null 2>&1 &");
    h.wait_listening(2, 10250, Duration::from_secs(10));
    let out = kubeforge(&["status", "-f", inv.to_str().unwrap()], &[]);
    h.sh(2, "pkill -f 'http.server 10250'");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a busy port is a blocking finding:\n{stdout}"
    );
    assert!(stdout.starts_with("HOST "), "{stdout}");
    // every value sits under its own header
    let header = stdout.lines().next().unwrap();
    let row = stdout.lines().find(|l| l.starts_with("node2 ")).unwrap();
    let under = |col: &str| row[header.find(col).unwrap()..].split("  ").next().unwrap();
    assert_eq!(under("ADDRESS"), "10.123.0.12", "{stdout}");
    assert_eq!(
        under("CERTS"),
        "-",
        "no cluster, no certificates:\n{stdout}"
    );
    assert!(under("PREFLIGHT").starts_with("1 error"), "{stdout}");
    assert!(
        stdout.contains("error    node2  Ports: port 10250 already in use"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 hosts: 3 reachable, 0 unreachable; 1 preflight error"),
        "{stdout}"
    );
    // --ignore-preflight skips it by name
    h.sh(2, "nohup python3 -m http.server 10250 >/dev/null 2>&1 &");
    h.wait_listening(2, 10250, Duration::from_secs(10));
    let out = kubeforge(
        &[
            "status",
            "-f",
            inv.to_str().unwrap(),
            "--ignore-preflight",
            "ports",
        ],
        &[],
    );
    h.sh(2, "pkill -f 'http.server 10250'");
    assert!(out.status.success(), "{}", text(&out.stdout));
    let out = kubeforge(
        &[
            "status",
            "-f",
            inv.to_str().unwrap(),
            "--ignore-preflight",
            "nope",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown check nope"));
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn unknown_host_keys_are_refused_then_recorded_with_the_flag() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let inv = three(&h, dir.path(), &kh);
    let out = kubeforge(&["status", "-f", inv.to_str().unwrap()], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("3 unreachable"), "{stdout}");
    assert!(
        stdout.contains("node2: the host key of 10.123.0.12 is not known (ssh-ed25519 SHA256:"),
        "{stdout}"
    );
    assert!(stdout.contains("--accept-new-host-keys"), "{stdout}");
    assert!(!kh.exists(), "nothing recorded without the flag");

    let out = kubeforge(
        &[
            "status",
            "-f",
            inv.to_str().unwrap(),
            "--accept-new-host-keys",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("recorded new host key of 10.123.0.11"));
    // the recorded keys are the hosts' real keys
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(recorded.lines().count(), 3, "{recorded}");
    for i in 1..=3 {
        let real = h.sh(i, "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub");
        assert!(
            recorded.contains(&format!("{} ssh-ed25519 {}", h.ip(i), real.trim())),
            "node{i}: {recorded}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kh).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = kubeforge(&["status", "-f", inv.to_str().unwrap()], &[]);
    assert!(out.status.success(), "known now: {}", text(&out.stdout));
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn a_changed_host_key_is_always_refused() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    let kg = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            other.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(kg.success());
    let other_pub = std::fs::read_to_string(dir.path().join("other.pub")).unwrap();
    let fake_key = other_pub.split_whitespace().nth(1).unwrap();
    // node2's line carries another key
    let real = std::fs::read_to_string(h.known_hosts()).unwrap();
    let kh = dir.path().join("known_hosts");
    let forged: String = real
        .lines()
        .map(|l| {
            if l.starts_with("10.123.0.12,") {
                format!("10.123.0.12,node2 ssh-ed25519 {fake_key}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&kh, format!("# forged for the test\n{forged}")).unwrap();
    let inv = three(&h, dir.path(), &kh);
    for flags in [&[][..], &["--accept-new-host-keys"][..]] {
        let mut args = vec!["status", "-f", inv.to_str().unwrap()];
        args.extend(flags);
        let out = kubeforge(&args, &[]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("2 reachable, 1 unreachable"), "{stdout}");
        assert!(
            stdout.contains("node2: HOST KEY CHANGED for 10.123.0.12"),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("recorded at {}:3", kh.display())),
            "names the line: {stdout}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap().lines().count(),
        4,
        "nothing appended"
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn a_wrong_key_is_an_authentication_error_naming_the_host() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                wrong.to_str().unwrap()
            ])
            .status()
            .unwrap()
            .success()
    );
    let inv = inventory(
        dir.path(),
        "w",
        V,
        &[(1, "control-plane")],
        &ssh_block(&h, &h.known_hosts(), &wrong),
        "",
    );
    let out = kubeforge(&["status", "-f", inv.to_str().unwrap()], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains(&format!(
            "node1: authentication failed for root@10.123.0.11:22: key {} rejected",
            wrong.display()
        )),
        "{stdout}"
    );
    // an encrypted key, no agent, no terminal: a clear message, no prompt, no hang
    let enc = dir.path().join("enc");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "s3cret",
                "-f",
                enc.to_str().unwrap()
            ])
            .status()
            .unwrap()
            .success()
    );
    let inv = inventory(
        dir.path(),
        "e",
        V,
        &[(1, "control-plane")],
        &ssh_block(&h, &h.known_hosts(), &enc),
        "",
    );
    let out = kubeforge(&["status", "-f", inv.to_str().unwrap()], &[]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("is encrypted and not in ssh-agent (add it with `ssh-add"),
        "{stdout}"
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn ssh_agent_and_ssh_config_are_honoured() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    let dir = tempfile::tempdir().unwrap();
    // ~/.ssh/config style: addresses are Host aliases; HostName, User, IdentityFile and
    // UserKnownHostsFile come from the harness's ssh_config
    let inv = dir.path().join("cfg.yaml");
    std::fs::write(
        &inv,
        format!(
            "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: cfg}}\nspec:\n  kubernetes: {{version: {V}}}\n  ssh: {{config: {}}}\n  hosts:\n    - {{name: node1, address: node1, role: control-plane}}\n    - {{name: node2, address: node2, role: worker}}\n",
            h.ssh_config().display()
        ),
    )
    .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let home_s = home.to_str().unwrap();
    let out = kubeforge(
        &["status", "-f", inv.to_str().unwrap(), "-o", "json"],
        &[("HOME", home_s)],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hosts"][1]["facts"]["hostname"], "node2");

    // ssh-agent: no key file anywhere, the key only in the agent
    let sock = dir.path().join("agent.sock");
    let agent = std::process::Command::new("ssh-agent")
        .args(["-D", "-a", sock.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
        }
    }
    let _agent = Kill(agent);
    wait_for(
        &format!("ssh-agent's socket {}", sock.display()),
        Duration::from_secs(10),
        || {
            if sock.exists() {
                Ok(())
            } else {
                Err("not there yet".into())
            }
        },
    );
    let add = std::process::Command::new("ssh-add")
        .arg(h.key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(add.status.success(), "{}", text(&add.stderr));
    let inv = inventory(
        dir.path(),
        "agent",
        V,
        &[(1, "control-plane"), (2, "worker")],
        &format!(
            "    knownHosts: {}\n    config: none\n",
            h.known_hosts().display()
        ),
        "",
    );
    let out = kubeforge(
        &["status", "-f", inv.to_str().unwrap()],
        &[("HOME", home_s), ("SSH_AUTH_SOCK", sock.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // without the agent there is nothing to offer
    let out = kubeforge(
        &["status", "-f", inv.to_str().unwrap()],
        &[("HOME", home_s)],
    );
    assert!(
        text(&out.stdout).contains("no key to offer"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn a_non_root_user_works_through_sudo_and_a_password_prompt_is_an_error() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    for (user, sudoers) in [
        ("ops", "ops ALL=(ALL) NOPASSWD: ALL"),
        ("pw", "pw ALL=(ALL) ALL"),
    ] {
        h.sh(
            1,
            &format!(
                "id {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}; \
                 install -d -m 700 -o {user} -g {user} /home/{user}/.ssh; \
                 install -m 600 -o {user} -g {user} /root/.ssh/authorized_keys /home/{user}/.ssh/authorized_keys; \
                 echo '{sudoers}' > /etc/sudoers.d/{user}; chmod 440 /etc/sudoers.d/{user}"
            ),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(
        dir.path(),
        "ops",
        V,
        &[(1, "control-plane")],
        &format!(
            "    user: ops\n{}",
            ssh_block(&h, &h.known_hosts(), &h.key())
        ),
        "",
    );
    let out = kubeforge(
        &[
            "exec",
            "-f",
            inv.to_str().unwrap(),
            "--",
            "id -un; cat /etc/shadow >/dev/null && echo read-shadow",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("\nroot\nread-shadow\n"),
        "{}",
        text(&out.stdout)
    );
    let out = kubeforge(&["status", "-f", inv.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stdout));

    let inv = inventory(
        dir.path(),
        "pw",
        V,
        &[(1, "control-plane")],
        &format!(
            "    user: pw\n{}",
            ssh_block(&h, &h.known_hosts(), &h.key())
        ),
        "",
    );
    let start = Instant::now();
    let out = kubeforge(&["status", "-f", inv.to_str().unwrap()], &[]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "no hang on a sudo password prompt"
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("node1: user pw cannot run commands as root: passwordless sudo is required (sudo -n said: sudo: a password is required)"),
        "{stdout}"
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn a_host_reachable_only_through_a_bastion() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    // node3 drops SSH from this machine; node1 can still reach it
    let rule = "INPUT -p tcp --dport 22 -s 10.123.0.1 -j DROP";
    h.sh(3, &format!("iptables -I {rule}"));
    struct Unblock<'a>(&'a Harness, &'a str);
    impl Drop for Unblock<'_> {
        fn drop(&mut self) {
            let _ = self.0.exec(3, &format!("iptables -D {}", self.1));
        }
    }
    let _unblock = Unblock(&h, rule);
    let dir = tempfile::tempdir().unwrap();
    let ssh = ssh_block(&h, &h.known_hosts(), &h.key());
    let direct = inventory(dir.path(), "direct", V, &[(3, "control-plane")], &ssh, "");
    let out = kubeforge(
        &[
            "status",
            "-f",
            direct.to_str().unwrap(),
            "--connect-timeout",
            "3",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "direct access is blocked");
    assert!(
        text(&out.stdout).contains("node3: no SSH answer from 10.123.0.13:22 within 3s"),
        "{}",
        text(&out.stdout)
    );

    // the bastion's user is a plain forwarding account, as on a real jump host: no sudo and no
    // shell
    h.sh(
        1,
        "id jump >/dev/null 2>&1 || useradd -m -s /usr/sbin/nologin jump; \
         install -d -m 700 -o jump -g jump /home/jump/.ssh; \
         install -m 600 -o jump -g jump /root/.ssh/authorized_keys /home/jump/.ssh/authorized_keys; \
         rm -f /etc/sudoers.d/jump",
    );
    let via = dir.path().join("via.yaml");
    std::fs::write(
        &via,
        format!(
            "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: via}}\nspec:\n  kubernetes: {{version: {V}}}\n  ssh:\n{ssh}  hosts:\n    - {{name: node1, address: 10.123.0.11, role: control-plane}}\n    - {{name: node3, address: 10.123.0.13, role: worker, bastion: {{address: 10.123.0.11, user: jump}}}}\n"
        ),
    )
    .unwrap();
    let out = kubeforge(
        &[
            "exec",
            "-f",
            via.to_str().unwrap(),
            "--",
            "hostname; echo $SSH_CONNECTION",
        ],
        &[],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    // node3 saw the connection come from node1 (the tunnel), not from this machine
    assert!(stdout.contains("--- node3 (exit 0"), "{stdout}");
    assert!(stdout.contains("node3\n10.123.0.11 "), "{stdout}");
    assert!(stdout.contains("node1\n10.123.0.1 "), "{stdout}");
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn a_cut_link_fails_that_host_within_seconds_while_the_others_finish() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    let dir = tempfile::tempdir().unwrap();
    let inv = three(&h, dir.path(), &h.known_hosts());
    let _heal = Healer(&h, 2);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .args([
            "exec",
            "-f",
            inv.to_str().unwrap(),
            "-o",
            "json",
            "--",
            "sleep 20; echo finished",
        ])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let spawned = Instant::now();
    // the command runs on every host (kubeforge connected and started it) before node2's link
    // is cut; `elapsed` in the report counts from kubeforge's start, after `spawned`
    wait_for(
        "`sleep 20` running on node1, node2 and node3",
        Duration::from_secs(15),
        || {
            let missing: Vec<String> = (1..=3)
                .filter(|&i| !h.exec(i, "pgrep -fx 'sleep 20'").status.success())
                .map(|i| format!("node{i}"))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("not yet on {}", missing.join(", ")))
            }
        },
    );
    let cut_at = spawned.elapsed().as_secs_f64();
    let out = h.nodes(&["cut", "2"]);
    assert!(out.status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = v.as_array().unwrap();
    assert_eq!(r[0]["status"], 0);
    assert_eq!(r[2]["status"], 0);
    assert_eq!(r[0]["stdout"], "finished\n");
    assert!(
        r[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("node2: connection lost while running `sleep 20; echo finished`"),
        "{}",
        r[1]
    );
    let failed_after = r[1]["elapsed"].as_f64().unwrap() - cut_at;
    assert!(
        failed_after < 12.0,
        "node2 failed {failed_after:.1}s after the cut"
    );
    assert!(r[0]["elapsed"].as_f64().unwrap() >= 20.0);
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn uploads_are_atomic_with_mode_and_owner_and_files_read_back() {
    use kubeforge::ssh::session::Upload;
    use kubeforge::ssh::{ConnectOptions, Connector, Resolver};
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    h.sh(
        1,
        "id ops >/dev/null 2>&1 || { useradd -m -s /bin/bash ops; install -d -m 700 -o ops -g ops /home/ops/.ssh; \
         install -m 600 -o ops -g ops /root/.ssh/authorized_keys /home/ops/.ssh/authorized_keys; \
         echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ops; chmod 440 /etc/sudoers.d/ops; }",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let resolver = Resolver::with_config(
            Default::default(),
            Some(h.known_hosts()),
            Duration::from_secs(10),
        );
        let connector = Connector::new(ConnectOptions::default());
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.bin");
        let data: Vec<u8> = (0..12_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&big, &data).unwrap();
        for user in ["root", "ops"] {
            let target = resolver.target(
                "node1",
                &kubeforge::model::SshTarget {
                    address: h.ip(1),
                    port: None,
                    user: Some(user.into()),
                    key_path: Some(h.key()),
                    bastion: None,
                },
            );
            let s = connector.connect(&target).await.unwrap();
            let dest = format!("/etc/kf-test-{user}/sub/a.conf");
            s.upload(Upload::Bytes(b"first\n"), &dest, 0o640, "root:root")
                .await
                .unwrap();
            s.upload(Upload::Bytes(b"second\n"), &dest, 0o640, "root:root")
                .await
                .unwrap();
            assert_eq!(s.read_file(&dest).await.unwrap(), b"second\n");
            let st = s
                .run(&format!(
                    "stat -c '%a %U %G' {dest}; ls -A /etc/kf-test-{user}/sub"
                ))
                .await
                .unwrap();
            assert_eq!(
                st, "640 root root\na.conf\n",
                "{user}: mode, owner, and no temporary file left"
            );
            let bin = format!("/opt/kf-test-{user}/big.bin");
            let t = Instant::now();
            s.upload(Upload::File(&big), &bin, 0o755, "root:root")
                .await
                .unwrap();
            eprintln!("{user}: 12 MB upload in {:.2}s", t.elapsed().as_secs_f64());
            let sum = s
                .run(&format!("sha256sum {bin} | cut -d' ' -f1"))
                .await
                .unwrap();
            use sha2::Digest;
            assert_eq!(sum.trim(), hex::encode(sha2::Sha256::digest(&data)));
            // a script holding a secret reaches sudo on stdin, so sudo's log never holds it;
            // an ordinary command line is logged (the check below could fail)
            let secret = format!("kf-secret-{}", std::process::id());
            let out = s
                .exec_with(
                    &format!("echo {secret} | wc -c"),
                    kubeforge::ssh::session::Exec {
                        secret: true,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(out.stdout().trim(), (secret.len() + 1).to_string());
            let visible = format!("kf-visible-{}", std::process::id());
            s.run(&format!("true {visible}")).await.unwrap();
            if user == "ops" {
                // sudo logged the secret's command (if it did) before the visible one: once
                // the visible one is in the journal, so is anything the secret left
                let log: Result<String, _> = kubeforge::wait::poll_until(
                    Duration::from_secs(15),
                    common::POLL_INTERVAL,
                    "sudo's log of the visible command line in node1's journal",
                    || async {
                        let log = h.sh(1, "journalctl -q --no-pager -t sudo");
                        if log.contains(&visible) {
                            Poll::<_, String>::Ready(log)
                        } else {
                            Poll::Pending(format!("sudo logs command lines:\n{log}"))
                        }
                    },
                )
                .await;
                let log = log.unwrap_or_else(|e| panic!("{e}"));
                assert!(!log.contains(&secret), "a secret in sudo's log:\n{log}");
            }
            // exec: stdin, exit status, stderr
            let out = s
                .exec_with(
                    "cat; echo oops >&2; exit 3",
                    kubeforge::ssh::session::Exec {
                        stdin: Some(b"in\n"),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(
                (out.status, out.stdout(), out.stderr()),
                (3, "in\n".to_string(), "oops\n".to_string())
            );
            let e = s.run("echo bad >&2; exit 7").await.unwrap_err().to_string();
            assert_eq!(
                e,
                "node1: `echo bad >&2; exit 7` failed with exit status 7: bad"
            );
            let e = s
                .exec_with(
                    "sleep 30",
                    kubeforge::ssh::session::Exec {
                        timeout: Some(Duration::from_secs(1)),
                        ..Default::default()
                    },
                )
                .await
                .unwrap_err()
                .to_string();
            assert_eq!(e, "node1: `sleep 30` did not finish within 1.0s");
            // ... and the host ends it soon after, instead of letting it run on
            let gone: Result<(), _> = kubeforge::wait::poll_until(
                Duration::from_secs(12),
                Duration::from_millis(500),
                &format!("{user}: the timed-out command to be stopped on the host"),
                || async {
                    match s.run("pgrep -x sleep | wc -l").await {
                        Ok(left) if left.trim() == "0" => Poll::Ready(()),
                        Ok(left) => Poll::Pending(format!("{} `sleep` still running", left.trim())),
                        Err(e) => Poll::Abort(e.to_string()),
                    }
                },
            )
            .await;
            gone.unwrap_or_else(|e| panic!("{e}"));
            s.run(&format!("rm -rf /etc/kf-test-{user} /opt/kf-test-{user}"))
                .await
                .unwrap();
            s.close().await;
        }
    });
}

/// The peak resident memory (VmHWM, in KiB) of a running process, if it is still there.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Waits up to `secs` for `child` to exit, reading its peak RSS every 5 ms meanwhile. Returns
/// its exit status and the highest VmHWM read (0: never read); when it does not end in time,
/// kills it and says so, with the peak seen.
fn exit_sampling_peak_rss(
    child: &mut std::process::Child,
    name: &str,
    secs: u64,
) -> Result<(std::process::ExitStatus, u64), String> {
    let pid = child.id();
    let mut peak = 0;
    let exited = poll_for::<_, String>(
        &format!("{name} to end"),
        Duration::from_secs(secs),
        Duration::from_millis(5),
        || {
            if let Some(st) = child.try_wait().unwrap() {
                return Poll::Ready(st);
            }
            if let Some(kib) = peak_rss_kib(pid) {
                peak = peak.max(kib);
            }
            Poll::Pending(format!("still running, peak RSS {peak} KiB"))
        },
    );
    match exited {
        Ok(st) => Ok((st, peak)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e.to_string())
        }
    }
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn endless_output_is_cut_at_the_cap_with_bounded_memory_and_time() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    let dir = tempfile::tempdir().unwrap();
    let ssh = ssh_block(&h, &h.known_hosts(), &h.key());
    let inv = inventory(dir.path(), "big", V, &[(1, "control-plane")], &ssh, "");
    let cmd = "head -c 100000000 /dev/zero";
    let out_file = dir.path().join("stdout");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .args(["exec", "-f", inv.to_str().unwrap(), "--", cmd])
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let (status, peak) =
        exit_sampling_peak_rss(&mut child, "kubeforge exec", 90).unwrap_or_else(|e| panic!("{e}"));
    let took = start.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let stdout = std::fs::read(&out_file).unwrap();
    let shown = text(&stdout[..stdout.len().min(4000)]);
    assert_eq!(status.code(), Some(1), "{shown}{stderr}");
    let said = format!("{}{stderr}", text(&stdout));
    assert!(
        said.contains(&format!(
            "node1: output of `{cmd}` exceeded 16 MiB; the command was stopped"
        )),
        "{shown}{stderr}"
    );
    assert!(
        stdout.len() < 1 << 20,
        "no output is passed on: {} bytes",
        stdout.len()
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // 16 MiB kept, plus the program itself; 100 MB of output is never held
    assert!(peak > 0, "VmHWM was read");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    // the remote command was stopped, not left writing into a closed channel
    wait_for(
        "the remote `head` to be stopped on node1",
        Duration::from_secs(15),
        || {
            let left = h.exec(1, "pgrep -f '^head -c 100000000' || true");
            if text(&left.stdout).trim().is_empty() {
                Ok(())
            } else {
                Err(format!("still running on node1: {}", text(&left.stdout)))
            }
        },
    );
}

/// A second sshd on node1 with its own RSA host key, offering only `algorithms` for it;
/// stopped (by its pid file) when dropped.
struct ExtraSshd<'a> {
    h: &'a Harness,
    dir: String,
}

impl<'a> ExtraSshd<'a> {
    fn start(h: &'a Harness, dir: &str, port: u16, algorithms: &str) -> Self {
        h.sh(
            1,
            &format!(
                "/usr/sbin/sshd -p {port} -o HostKey={dir}/host_rsa -o HostKeyAlgorithms={algorithms} -o PidFile={dir}/sshd-{port}.pid"
            ),
        );
        let me = ExtraSshd {
            h,
            dir: dir.to_string(),
        };
        h.wait_listening(1, port, Duration::from_secs(10));
        me
    }
}

impl Drop for ExtraSshd<'_> {
    fn drop(&mut self) {
        let _ = self.h.exec(
            1,
            &format!(
                "for p in {0}/sshd-*.pid; do [ -f \"$p\" ] && kill \"$(cat \"$p\")\"; done; rm -rf {0}",
                self.dir
            ),
        );
    }
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn ssh_rsa_sha1_host_key_signatures_are_refused_and_rsa_sha2_accepted() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    // a fresh RSA host key, so the test does not depend on the node's own keys
    let node_dir = h.sh(1, "mktemp -d /run/kf-rsa-XXXXXX").trim().to_string();
    h.sh(
        1,
        &format!("ssh-keygen -q -t rsa -b 3072 -N '' -f {node_dir}/host_rsa"),
    );
    let sha1_only = ExtraSshd::start(&h, &node_dir, 2222, "ssh-rsa");
    let sha2 = ExtraSshd::start(&h, &node_dir, 2223, "rsa-sha2-512");
    let rsa_pub = h.sh(1, &format!("cut -d' ' -f1,2 {node_dir}/host_rsa.pub"));
    let rsa_pub = rsa_pub.trim();
    assert!(rsa_pub.starts_with("ssh-rsa AAAA"), "{rsa_pub}");

    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    // the key is known: the only reason to refuse is the signature algorithm
    std::fs::write(
        &kh,
        format!("[10.123.0.11]:2222 {rsa_pub}\n[10.123.0.11]:2223 {rsa_pub}\n"),
    )
    .unwrap();
    let inv = |port: u16| {
        let p = dir.path().join(format!("rsa{port}.yaml"));
        std::fs::write(
            &p,
            format!(
                "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: rsa}}\nspec:\n  kubernetes: {{version: {V}}}\n  ssh:\n{}  hosts:\n    - {{name: node1, address: 10.123.0.11, port: {port}, role: control-plane}}\n",
                ssh_block(&h, &kh, &h.key())
            ),
        )
        .unwrap();
        p
    };
    let started = Instant::now();
    let refused = inv(2222);
    for flags in [&[][..], &["--accept-new-host-keys"][..]] {
        let mut args = vec!["exec", "-f", refused.to_str().unwrap()];
        args.extend(flags);
        args.extend(["--", "echo reached"]);
        let out = kubeforge(&args, &[]);
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(!said.contains("reached"), "{said}");
        assert!(
            said.contains(
                "node1: 10.123.0.11:2222 signs its host key only with ssh-rsa; kubeforge refuses ssh-rsa (SHA-1) host-key signatures"
            ),
            "{said}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    // the same key, signing with SHA-512, is accepted
    let accepted = inv(2223);
    let out = kubeforge(
        &[
            "exec",
            "-f",
            accepted.to_str().unwrap(),
            "--",
            "echo reached",
        ],
        &[],
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("reached"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap().lines().count(),
        2,
        "nothing recorded"
    );
    drop(sha2);
    drop(sha1_only);
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn accepting_new_keys_keeps_an_unterminated_last_entry_trusted() {
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    // node1 is known, on a last line without a newline (as an editor or a script may leave it)
    let real = std::fs::read_to_string(h.known_hosts()).unwrap();
    let node1 = real
        .lines()
        .find(|l| l.starts_with("10.123.0.11,"))
        .unwrap()
        .to_string();
    std::fs::write(&kh, &node1).unwrap();
    let inv = three(&h, dir.path(), &kh);
    // node2 and node3 are recorded at once, by concurrent connections
    let out = kubeforge(
        &[
            "status",
            "-f",
            inv.to_str().unwrap(),
            "--accept-new-host-keys",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert!(
        recorded.starts_with(&format!("{node1}\n")),
        "the trusted line is intact:\n{recorded}"
    );
    assert_eq!(recorded.lines().count(), 3, "{recorded}");
    assert!(recorded.ends_with('\n'));
    // every host is trusted now, node1 by its original line, without the flag
    let out = kubeforge(&["status", "-f", inv.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), recorded);
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn a_file_read_from_a_host_is_bounded_too() {
    // As root, files are read over SFTP: a host whose admin.conf is /dev/zero must give a clear
    // error within bounded memory, as the capped output of a command does.
    let _g = serial();
    let h = Harness::get();
    h.clean(3);
    let dir = tempfile::tempdir().unwrap();
    let ssh = ssh_block(&h, &h.known_hosts(), &h.key());
    let inv = inventory(dir.path(), "zero", V, &[(1, "control-plane")], &ssh, "");
    h.sh(
        1,
        "mkdir -p /etc/kubernetes && rm -f /etc/kubernetes/admin.conf && ln -s /dev/zero /etc/kubernetes/admin.conf",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .args([
            "kubeconfig",
            "-f",
            inv.to_str().unwrap(),
            "-o",
            dir.path().join("kc").to_str().unwrap(),
        ])
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = exit_sampling_peak_rss(&mut child, "kubeforge kubeconfig", 120);
    h.sh(1, "rm -f /etc/kubernetes/admin.conf");
    let (status, peak) = exited.unwrap_or_else(|e| panic!("{e}"));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_ne!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("read /etc/kubernetes/admin.conf") && stderr.contains("exceeded 64 MiB"),
        "{stderr}"
    );
    assert!(peak > 0, "VmHWM was read");
    // 64 MiB kept at most, plus the program; an endless file is never held
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
    assert!(!dir.path().join("kc").exists(), "no kubeconfig was written");
}
