"""A real IMAP server for the tests: Dovecot from the system's packages, on a free loopback port.

Each server gets a throwaway configuration, password file and maildir under a temporary directory,
and runs as the current user (no privileged ports, no chroot), so it works as root and as an
ordinary user alike. Mail is delivered with the standard library's ``imaplib`` (APPEND), as
another mail client would. Where Dovecot is not installed, ``dovecot_or_skip`` skips the test and
says how to install it.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from smtp_server import free_port

INSTALL_HELP = (
    "Dovecot is not installed: the IMAP integration tests need it. Install it with "
    "`apt-get install -y dovecot-imapd` (Debian/Ubuntu; CI's .ci/run does this)."
)
USER = "support"
PASSWORD = "imap-secret-4711"


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.path.exists(p)), None
    )


def dovecot_or_skip() -> str:
    binary = dovecot_binary()
    if binary is None:
        pytest.skip(INSTALL_HELP)
    return binary


class Dovecot:
    """``start()`` / ``stop()``; ``deliver(raw)`` appends a mail; ``renumber()`` changes UIDVALIDITY."""

    def __init__(self, *, idle: bool = True) -> None:
        self.binary = dovecot_or_skip()
        # A directory of its own under the system's temporary directory: pytest's tmp_path is
        # private to the user, and under root Dovecot's unprivileged processes must traverse it.
        self.root = Path(tempfile.mkdtemp(prefix="hub-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.idle = idle
        self.proc: subprocess.Popen[bytes] | None = None
        self.maildir = self.root / "mail" / USER

    def _accounts(self) -> tuple[str, str, str, int, int]:
        """(internal user, its group, login user, mail uid, mail gid).

        Dovecot refuses to run its login and mail processes as root: under root they use the
        package's unprivileged ``dovecot`` and ``dovenull`` users; otherwise everything runs as
        the current user.
        """
        if os.getuid() != 0:
            me = pwd.getpwuid(os.getuid())
            group = grp.getgrgid(os.getgid()).gr_name
            return me.pw_name, group, me.pw_name, me.pw_uid, me.pw_gid
        try:
            internal = pwd.getpwnam("dovecot")
            login = pwd.getpwnam("dovenull")
        except KeyError:
            pytest.skip("running as root needs the dovecot and dovenull users: " + INSTALL_HELP)
        group = grp.getgrgid(internal.pw_gid).gr_name
        return internal.pw_name, group, login.pw_name, internal.pw_uid, internal.pw_gid

    def _config(self) -> str:
        user, group, login, uid, gid = self._accounts()
        capability = "" if self.idle else "imap_capability = IMAP4rev1 LITERAL+ SASL-IR UIDPLUS SPECIAL-USE\n"
        return f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
info_log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {login}
mail_location = maildir:{self.root}/mail/%u
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
{capability}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    user = {user}
  }}
  unix_listener stats-writer {{
    user = {user}
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
"""

    def start(self) -> Dovecot:
        _, _, _, uid, gid = self._accounts()
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            for sub in ("mail", "home"):
                os.chown(self.root / sub, uid, gid)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        conf = self.root / "dovecot.conf"
        conf.write_text(self._config())
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise RuntimeError(f"dovecot exited: {out}\n{self.log()}")
            try:
                with imaplib.IMAP4("127.0.0.1", self.port, timeout=2) as probe:
                    probe.login(USER, PASSWORD)
                    probe.logout()
                return self
            except (OSError, imaplib.IMAP4.error):
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not start on port {self.port}\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def deliver(self, raw: bytes, mailbox: str = "INBOX") -> None:
        with imaplib.IMAP4("127.0.0.1", self.port, timeout=10) as client:
            client.login(USER, PASSWORD)
            status, data = client.append(mailbox, "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK", data
            client.logout()

    def mailbox(self, mailbox: str = "INBOX") -> list[bytes]:
        """Every mail in ``mailbox``, as bytes."""
        with imaplib.IMAP4("127.0.0.1", self.port, timeout=10) as client:
            client.login(USER, PASSWORD)
            client.select(f'"{mailbox}"', readonly=True)
            _, data = client.uid("SEARCH", "ALL")
            out = []
            for uid in data[0].split():
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                first = parts[0]
                if isinstance(first, tuple):
                    out.append(first[1])
            client.logout()
            return out

    def uidvalidity(self, mailbox: str = "INBOX") -> int:
        with imaplib.IMAP4("127.0.0.1", self.port, timeout=10) as client:
            client.login(USER, PASSWORD)
            _, data = client.status(f'"{mailbox}"', "(UIDVALIDITY)")
            client.logout()
        match = re.search(rb"UIDVALIDITY (\d+)", data[0] or b"")
        assert match is not None
        return int(match.group(1))

    def renumber(self) -> None:
        """Give INBOX a new UIDVALIDITY, as a server restored from backup or migrated does.

        Dovecot keeps it in the maildir's ``dovecot-uidlist`` header (``V<n>``); the indexes cache
        it too, so they go. Call it while no client is connected.
        """
        uidlist = self.maildir / "dovecot-uidlist"
        text = uidlist.read_text()
        old = int(re.search(r"V(\d+)", text).group(1))  # type: ignore[union-attr]
        uidlist.write_text(re.sub(r"V\d+", f"V{old + 1000}", text, count=1))
        for index in self.maildir.glob("dovecot.index*"):
            index.unlink()
