"""The Debian package, as an administrator receives it: built by `make deb` (into build-deb/,
or PGPLEX_DEB names the .deb), inspected with dpkg-deb (files, conffiles, units, man pages),
checked by lintian (no errors) and mandoc, unpacked into a scratch root where the shipped
configuration and every example pass `pgplex --check`, and its maintainer scripts read and
run there as far as possible without touching this machine: nothing is installed
system-wide and no unit is started.

Building takes minutes on a busy box: when no .deb is found the test builds one once (at most
PACKAGE_BUILD_SECONDS), so run `make deb` first to keep this file fast."""

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEB_DIR = REPO / "build-deb"
PACKAGE_BUILD_SECONDS = 1800

EXAMPLES = ["pgplex.toml", "single-node.toml", "primary-replicas.toml", "clusters.toml",
            "gossip-a.toml", "gossip-b.toml", "gossip-c.toml"]


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (scripts/deps.sh installs it)")


def version():
    text = (REPO / "debian" / "changelog").read_text()
    return re.match(r"pgplex \(([^)]+)\)", text).group(1)


@pytest.fixture(scope="module")
def deb():
    named = os.environ.get("PGPLEX_DEB")
    if named:
        return Path(named)
    found = sorted(glob.glob(str(DEB_DIR / f"pgplex_{version()}_*.deb")))
    if not found:
        need("dpkg-buildpackage")
        result = subprocess.run(["make", "-C", str(REPO), "deb"], capture_output=True,
                                text=True, timeout=PACKAGE_BUILD_SECONDS)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        found = sorted(glob.glob(str(DEB_DIR / f"pgplex_{version()}_*.deb")))
    assert found, f"no pgplex_{version()}_*.deb in {DEB_DIR}"
    return Path(found[-1])


@pytest.fixture(scope="module")
def root(deb, tmp_path_factory):
    """The package's files unpacked (dpkg-deb -x) into a scratch root."""
    directory = tmp_path_factory.mktemp("pgplex-root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(directory)], check=True)
    return directory


@pytest.fixture(scope="module")
def control(deb, tmp_path_factory):
    """The package's control area (dpkg-deb -e): control, conffiles, maintainer scripts."""
    directory = tmp_path_factory.mktemp("pgplex-control")
    subprocess.run(["dpkg-deb", "-e", str(deb), str(directory)], check=True)
    return directory


def contents(deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    return {line.split()[-1].lstrip(".") for line in listing.splitlines()}


def test_package_installs_the_daemon_units_man_pages_and_examples(deb):
    files = contents(deb)
    for path in ["/usr/sbin/pgplex", "/lib/systemd/system/pgplex.service",
                 "/lib/systemd/system/pgplex.socket", "/usr/lib/sysusers.d/pgplex.conf",
                 "/usr/share/man/man8/pgplex.8.gz", "/usr/share/man/man5/pgplex.toml.5.gz",
                 "/etc/pgplex/pgplex.toml", "/etc/pgplex/userlist.txt",
                 "/usr/share/doc/pgplex/copyright", "/usr/share/doc/pgplex/README.Debian",
                 "/usr/share/pgplex/pgplex.sql"]:
        assert path in files, f"{path} is not in the package: {sorted(files)}"
    for example in EXAMPLES:
        assert f"/usr/share/doc/pgplex/examples/{example}" in files, example


def test_conffiles_are_the_configuration_and_the_auth_file(control):
    conffiles = (control / "conffiles").read_text().split()
    assert sorted(conffiles) == ["/etc/pgplex/pgplex.toml", "/etc/pgplex/userlist.txt"]


def test_control_names_the_package_its_version_and_sysusers_dependency(deb):
    fields = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True,
                            check=True).stdout
    assert re.search(r"^Package: pgplex$", fields, re.M)
    assert re.search(rf"^Version: {re.escape(version())}$", fields, re.M)
    assert "systemd-sysusers" in fields


def test_lintian_reports_no_errors(deb):
    need("lintian")
    result = subprocess.run(["lintian", "--no-tag-display-limit", str(deb)],
                            capture_output=True, text=True, timeout=600)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert not errors, result.stdout
    assert result.returncode in (0, 1), result.stderr  # 1: warnings only; listed in README


def test_man_pages_are_clean_under_mandoc_lint():
    need("mandoc")
    for page in ["man/pgplex.8", "man/pgplex.toml.5"]:
        result = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", str(REPO / page)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_service_unit_is_hardened_notify_and_checks_the_config_first(root):
    unit = (root / "lib/systemd/system/pgplex.service").read_text()
    for line in ["Type=notify", "User=pgplex",
                 "ExecStartPre=/usr/sbin/pgplex --check /etc/pgplex/pgplex.toml",
                 "ExecReload=/usr/sbin/pgplex --check /etc/pgplex/pgplex.toml",
                 "KillSignal=SIGINT", "Restart=on-failure", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "ReadWritePaths=-/run/postgresql", "Documentation=man:pgplex(8)"]:
        assert re.search(rf"^{re.escape(line)}", unit, re.M), line
    assert re.search(r"^WatchdogSec=\d+", unit, re.M)
    assert re.search(r"^LimitNOFILE=\d{5,}", unit, re.M)
    if shutil.which("systemd-analyze"):
        result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                                 str(root / "lib/systemd/system/pgplex.socket"),
                                 str(root / "lib/systemd/system/pgplex.service")],
                                capture_output=True, text=True, timeout=60)
        # Only problems in pgplex's own units count (the machine's may have others), and
        # not that /usr/sbin/pgplex is not installed on this machine.
        problems = [line for line in result.stderr.splitlines()
                    if "pgplex." in line and "/usr/sbin/pgplex" not in line]
        assert not problems, result.stderr


def test_socket_unit_holds_the_default_addresses_named_pgplex(root):
    unit = (root / "lib/systemd/system/pgplex.socket").read_text()
    assert re.findall(r"^ListenStream=(.*)$", unit, re.M) == [
        "127.0.0.1:6432", "/run/postgresql/.s.PGSQL.6432"]
    assert re.search(r"^FileDescriptorName=pgplex$", unit, re.M)


def test_sysusers_makes_the_pgplex_user(root):
    text = (root / "usr/lib/sysusers.d/pgplex.conf").read_text()
    assert re.search(r"^u pgplex ", text, re.M), text


def copy_etc(root, directory):
    for name in ["pgplex.toml", "userlist.txt"]:
        shutil.copy(root / "etc/pgplex" / name, directory / name)


def check(binary, config, cwd):
    return subprocess.run([str(binary), "--check", str(config)], capture_output=True,
                          text=True, timeout=30, cwd=cwd)


def test_default_configuration_passes_check_and_listens_only_on_this_host(root, tmp_path):
    binary = root / "usr/sbin/pgplex"
    copy_etc(root, tmp_path)
    result = check(binary, tmp_path / "pgplex.toml", tmp_path)
    assert result.returncode == 0, result.stderr
    text = (root / "etc/pgplex/pgplex.toml").read_text()
    assert re.search(r'^listen = \["127\.0\.0\.1:6432"\]$', text, re.M)
    assert re.search(r'^unix_socket_dir = "/run/postgresql"$', text, re.M)
    # The shipped auth file has no users.
    users = [line for line in (root / "etc/pgplex/userlist.txt").read_text().splitlines()
             if line.strip() and not line.startswith(";")]
    assert users == []


def test_every_example_passes_check(root, tmp_path):
    binary = root / "usr/sbin/pgplex"
    examples = root / "usr/share/doc/pgplex/examples"
    for name in os.listdir(examples):
        target = tmp_path / name
        shutil.copy(examples / name, target)
        if name.endswith(".gz"):
            subprocess.run(["gunzip", "-f", str(target)], check=True)
    key = tmp_path / "gossip.key"
    key.write_text("0" * 64 + "\n")
    key.chmod(0o600)
    for example in EXAMPLES:
        result = check(binary, tmp_path / example, tmp_path)
        assert result.returncode == 0, f"{example}: {result.stdout}{result.stderr}"


def test_maintainer_scripts_are_valid_shell_and_secure_the_secrets(control):
    for script in ["postinst", "postrm"]:
        path = control / script
        assert os.access(path, os.X_OK), script
        assert subprocess.run(["sh", "-n", str(path)]).returncode == 0, script
    postinst = (control / "postinst").read_text()
    assert "systemd-sysusers" in postinst
    assert postinst.index("systemd-sysusers") < postinst.index("chown root:pgplex")
    assert "chmod 0640" in postinst


def test_postinst_in_a_scratch_root_makes_the_user_and_secures_the_files(deb, control,
                                                                         tmp_path):
    """postinst configure, run as dpkg would with DPKG_ROOT set to a scratch root: sysusers
    writes the user there; chown and chmod act on this machine's paths, so they are stubbed
    to record what they would do. deb-systemd-helper and systemctl are stubbed too: no unit
    of this machine is touched."""
    need("systemd-sysusers")
    if os.geteuid() != 0:
        pytest.skip("systemd-sysusers --root needs root")
    scratch = tmp_path / "root"
    (scratch / "etc").mkdir(parents=True)
    for name in ["passwd", "group", "shadow", "gshadow"]:
        (scratch / "etc" / name).write_text("root:x:0:0:root:/root:/bin/bash\n"
                                            if name == "passwd" else
                                            "root:x:0:\n" if name == "group" else "")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch)], check=True)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    log = tmp_path / "calls"
    for tool in ["chown", "chmod", "deb-systemd-helper", "deb-systemd-invoke", "systemctl",
                 "dpkg-statoverride"]:
        stub = stubs / tool
        exit_code = 1 if tool == "dpkg-statoverride" else 0
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\nexit {exit_code}\n')
        stub.chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/sbin:/usr/bin:/sbin:/bin", "DPKG_ROOT": str(scratch)}
    # The scripts address /etc/pgplex: make them look at the scratch root's files.
    script = (control / "postinst").read_text().replace("/etc/pgplex/",
                                                         f"{scratch}/etc/pgplex/")
    (tmp_path / "postinst").write_text(script)
    result = subprocess.run(["sh", str(tmp_path / "postinst"), "configure", ""],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    passwd = (scratch / "etc/passwd").read_text()
    assert re.search(r"^pgplex:x:\d+:\d+:", passwd, re.M), passwd
    group = (scratch / "etc/group").read_text()
    assert re.search(r"^postgres:x:\d+:.*\bpgplex\b", group, re.M), group
    calls = log.read_text()
    for name in ["pgplex.toml", "userlist.txt"]:
        assert f"chown root:pgplex {scratch}/etc/pgplex/{name}" in calls, calls
        assert f"chmod 0640 {scratch}/etc/pgplex/{name}" in calls, calls
