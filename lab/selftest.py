#!/usr/bin/env python3
"""lab/selftest.py — end-to-end check of a running mail lab (`scripts/lab selftest`).

Sends real mail through the lab Postfix and checks, over IMAP, what lands in the robot mailbox:
a simulator reply (reply-d500), a real Postfix DSN (bounce*), a RCPT refusal for a domain
outside the lab, +Junk filing, the TLS ports (submission STARTTLS+AUTH, SMTPS, IMAPS, IMAP
STARTTLS; verified against the lab CA only, wrong password and missing TLS/auth refused);
prints measured latencies.
Invariant: exits 0 only if every check passed within its bounded wait.
"""

import argparse
import email
import email.policy
import email.utils
import imaplib
import json
import os
import re
import smtplib
import sys
import time
from email.message import EmailMessage

PERSONA = ("Claire Dupont", "claire.dupont@robot.test")
WAIT_S = 15.0
FAILURES = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        FAILURES.append(what)
    return ok


def load_env(path):
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k] = v.strip().strip('"')
    return env


def enquiry(to, subject, token):
    m = EmailMessage()
    m["From"] = email.utils.formataddr(PERSONA)
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = email.utils.formatdate(localtime=True)
    m["Message-ID"] = email.utils.make_msgid(f"selftest{token}", domain="robot.test")
    m.set_content(
        "Bonjour,\n\nPourriez-vous m'indiquer le tarif d'une intervention à domicile ?\n\n"
        "Merci d'avance,\nClaire Dupont\n"
    )
    return m


def send(env, msg, rcpt):
    """Returns the epoch ms right after the server answered 250 to DATA."""
    with smtplib.SMTP("127.0.0.1", int(env["MYSTERY_LAB_SMTP_PORT"]), timeout=10) as s:
        s.sendmail(PERSONA[1], [rcpt], msg.as_bytes())
        return time.time() * 1000.0


class Box:
    """Polls one folder of the robot mailbox for new messages (every 10 ms)."""

    def __init__(self, env, folder):
        self.c = imaplib.IMAP4("127.0.0.1", int(env["MYSTERY_LAB_IMAP_PORT"]), timeout=10)
        self.c.login(env["MYSTERY_LAB_ROBOT_USER"], env["MYSTERY_LAB_ROBOT_PASSWORD"])
        typ, _ = self.c.select(folder)
        if typ != "OK":
            raise RuntimeError(f"cannot select {folder}")
        typ, data = self.c.status(folder, "(UIDNEXT)")
        self.next_uid = int(re.search(rb"UIDNEXT (\d+)", data[0]).group(1))
        self.got = []  # (seen_at_ms, message)

    def poll(self):
        self.c.noop()
        typ, data = self.c.uid("SEARCH", None, f"UID {self.next_uid}:*")
        uids = [int(u) for u in (data[0] or b"").split() if int(u) >= self.next_uid]
        if not uids:
            return
        seen_at = time.time() * 1000.0
        typ, data = self.c.uid("FETCH", ",".join(map(str, uids)), "(BODY.PEEK[])")
        for item in data:
            if isinstance(item, tuple):
                self.got.append((seen_at, email.message_from_bytes(item[1], policy=email.policy.default)))
        self.next_uid = max(uids) + 1

    def wait_for(self, pred, timeout_s=WAIT_S):
        deadline = time.monotonic() + timeout_s
        while True:
            for seen_at, m in self.got:
                if pred(m):
                    return seen_at, m
            if time.monotonic() > deadline:
                return None, None
            self.poll()
            time.sleep(0.01)


def sim_record(env, enquiry_id, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(env["MYSTERY_LAB_SIM_LOG"], encoding="utf-8") as f:
                for line in f:
                    r = json.loads(line)
                    if r.get("enquiry_message_id") == enquiry_id and not r.get("auto"):
                        return r
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    return None


def body_text(m):
    part = m.get_body(preferencelist=("plain", "html"))
    return part.get_content().replace("\r\n", "\n") if part is not None else ""


def check_tls(env, token, inbox):
    """The encrypted, authenticated ports, verified against the lab CA and nothing else."""
    import ssl
    ca = env["MYSTERY_LAB_CA_FILE"]
    ctx = ssl.create_default_context(cafile=ca)
    user, password = env["MYSTERY_LAB_ROBOT_USER"], env["MYSTERY_LAB_ROBOT_PASSWORD"]
    sub, smtps = int(env["MYSTERY_LAB_SUBMISSION_PORT"]), int(env["MYSTERY_LAB_SMTPS_PORT"])

    subjects = []
    for how in ("submission", "smtps"):
        m = enquiry(PERSONA[1], f"tls {how} selftest {token}", token)
        try:
            if how == "submission":
                s = smtplib.SMTP("127.0.0.1", sub, timeout=10)
                s.starttls(context=ctx)
            else:
                s = smtplib.SMTP_SSL("127.0.0.1", smtps, timeout=10, context=ctx)
            with s:
                s.login(user, password)
                s.sendmail(PERSONA[1], [PERSONA[1]], m.as_bytes())
            subjects.append(str(m["Subject"]))
            check(True, f"{how}: TLS verified against the lab CA, AUTH as {user}, message accepted")
        except (OSError, smtplib.SMTPException) as e:
            check(False, f"{how}: TLS + AUTH + send ({e!r})")
    for subj in subjects:
        check(inbox.wait_for(lambda x, s=subj: str(x["Subject"]) == s)[1] is not None,
              f"'{subj}' delivered to robot INBOX")

    try:
        with smtplib.SMTP("127.0.0.1", sub, timeout=10) as s:
            s.starttls(context=ctx)
            s.login(user, password + "-wrong")
        check(False, "submission: a wrong password is refused (it was accepted!)")
    except smtplib.SMTPAuthenticationError as e:
        check(e.smtp_code == 535, f"submission: a wrong password is refused ({e.smtp_code})")
    with smtplib.SMTP("127.0.0.1", sub, timeout=10) as s:
        s.ehlo()
        code, _ = s.mail(PERSONA[1])
        check(code == 530 and not s.has_extn("auth"),
              f"submission: no AUTH offered and MAIL refused before STARTTLS ({code})")
    with smtplib.SMTP("127.0.0.1", sub, timeout=10) as s:
        s.starttls(context=ctx)
        s.mail(PERSONA[1])
        code, _ = s.rcpt(PERSONA[1])
        check(500 <= code < 600, f"submission: RCPT refused without AUTH ({code})")
    try:
        with smtplib.SMTP_SSL("127.0.0.1", smtps, timeout=10, context=ssl.create_default_context()):
            pass
        check(False, "SMTPS: the system roots do not trust the lab (they did!)")
    except ssl.SSLCertVerificationError:
        check(True, "SMTPS: the system roots do not trust the lab certificate")

    for how, port, starttls in (("IMAPS", int(env["MYSTERY_LAB_IMAPS_PORT"]), False),
                                ("IMAP STARTTLS", int(env["MYSTERY_LAB_IMAP_PORT"]), True)):
        try:
            if starttls:
                c = imaplib.IMAP4("127.0.0.1", port, timeout=10)
                c.starttls(ssl_context=ctx)
            else:
                c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=10)
            typ, _ = c.login(user, password)
            check(typ == "OK", f"{how}: TLS verified against the lab CA, LOGIN as {user}")
            c.logout()
        except (OSError, imaplib.IMAP4.error) as e:
            check(False, f"{how}: TLS + LOGIN ({e!r})")


def check_kinds(env, token, inbox, junk):
    """Every simulator kind once, with short delays, checked on what the robot receives."""
    sent = {}
    for kind in ("ooo-d300", "ack", "never", "html-d100", "latin1-d100", "cp1252-d100",
                 "quoted-d100", "noref-d100", "junk-d100"):
        to = f"{kind}.k{token}@paris.branch.test"
        q = enquiry(to, f"Devis {kind.split('-')[0]} {token}", token)
        send(env, q, to)
        sent[kind.split("-")[0]] = (q["Message-ID"].strip("<>"), str(q["Subject"]))

    def replies_to(kind, box=inbox, timeout_s=WAIT_S):
        qid = sent[kind][0]
        return box.wait_for(lambda x: str(x.get("In-Reply-To", "")).strip("<> ") == qid, timeout_s)[1]

    def is_auto(m):
        return str(m.get("Auto-Submitted", "no")).lower() != "no"

    qid = sent["ooo"][0]
    ooo = inbox.wait_for(lambda x: str(x.get("In-Reply-To", "")).strip("<> ") == qid and is_auto(x))[1]
    check(ooo is not None and str(ooo["Subject"]) == "Réponse automatique : absent du bureau",
          "ooo: out-of-office with Auto-Submitted and the French subject")
    human = inbox.wait_for(lambda x: str(x.get("In-Reply-To", "")).strip("<> ") == qid and not is_auto(x))[1]
    check(human is not None and "tarif" in body_text(human), "ooo: then a human reply with a price")

    ack = replies_to("ack")
    check(ack is not None and is_auto(ack) and str(ack["Subject"]).startswith("Accusé de réception"),
          "ack: automatic acknowledgement 'Accusé de réception'")

    m = replies_to("html")
    check(m is not None and m.get_content_type() == "text/html" and not m.is_multipart()
          and "<blockquote" in m.get_content() and "tarif" in m.get_content(),
          "html: single text/html part with a blockquote and a price")

    m = replies_to("latin1")
    check(m is not None and m.get_content_charset() == "iso-8859-1"
          and m["Content-Transfer-Encoding"] == "quoted-printable"
          and m.get_content().startswith("Bonjour Claire Dupont,") and "intérêt" in m.get_content(),
          "latin1: iso-8859-1 quoted-printable, decodes to French text")

    m = replies_to("cp1252")
    check(m is not None and m.get_content_charset() == "windows-1252"
          and "€" in m.get_content() and "’" in m.get_content(),
          "cp1252: windows-1252 with € and ’")

    m = replies_to("quoted")
    lines = [x for x in body_text(m).split("\n") if x] if m is not None else []
    check(bool(lines) and lines[0].startswith("Le ") and lines[0].endswith("a écrit :")
          and all(x.startswith(">") for x in lines[1:]),
          f"quoted: only 'Le … a écrit :' and '>' lines {lines[:2]!r}")

    subj = f"RE : {sent['noref'][1]}"
    m = inbox.wait_for(lambda x: str(x["Subject"]) == subj)[1]
    check(m is not None and m.get("In-Reply-To") is None and m.get("References") is None,
          "noref: 'RE : <subject>' without In-Reply-To/References")

    m = replies_to("junk", box=junk)
    check(m is not None and "tarif" in body_text(m), "junk: human reply filed in robot's Junk")

    # Give never/ack a chance to misbehave: 1.5 s after everything else arrived.
    time.sleep(1.5)
    for box in (inbox, junk):
        box.poll()
    check(replies_to("never", timeout_s=0) is None and sim_record(env, sent["never"][0], 0.1) is None,
          "never: no answer at all")
    qid = sent["ack"][0]
    check(inbox.wait_for(lambda x: str(x.get("In-Reply-To", "")).strip("<> ") == qid and not is_auto(x), 0)[1]
          is None, "ack: no human reply")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--env", default=os.path.join(os.environ.get("MYSTERY_LAB_DIR", "/tmp/mystery-lab"), "lab.env"))
    args = p.parse_args()
    env = load_env(args.env)
    token = f"{int(time.time() * 1000) % 10**9}p{os.getpid()}"

    inbox = Box(env, "INBOX")
    junk = Box(env, "Junk")

    # 1. An enquiry answered by the simulator after 500 ms.
    branch = f"reply-d500.st{token}@lille.branch.test"
    q = enquiry(branch, f"Demande de tarif selftest {token}", token)
    qid = q["Message-ID"].strip("<>")
    q_accepted = send(env, q, branch)

    # 2. An enquiry to a bouncing branch address: Postfix accepts, then sends a DSN.
    bounce = f"bounce.st{token}@lyon.branch.test"
    b = enquiry(bounce, f"Demande bounce selftest {token}", token)
    b_accepted = send(env, b, bounce)

    # 3. A domain outside the lab: refused at RCPT, nothing queued.
    try:
        send(env, enquiry("x@outside.example", "outside", token), "x@outside.example")
        check(False, "x@outside.example refused at RCPT (it was accepted!)")
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["x@outside.example"]
        check(500 <= code < 600, f"x@outside.example refused at RCPT: {code} {text.decode(errors='replace')}")

    # 4. +Junk filing and plain delivery latency (Postfix 250 -> visible to an IMAP poll).
    direct = []
    for i in range(3):
        m = enquiry(PERSONA[1], f"direct {i} selftest {token}", token)
        accepted = send(env, m, PERSONA[1])
        seen_at, got = inbox.wait_for(lambda x, s=str(m["Subject"]): str(x["Subject"]) == s)
        if check(got is not None, f"direct message {i} visible in robot INBOX"):
            direct.append(seen_at - accepted)
    jm = enquiry(f"claire.dupont+Junk@robot.test", f"junk selftest {token}", token)
    j_accepted = send(env, jm, "claire.dupont+Junk@robot.test")
    j_seen, jgot = junk.wait_for(lambda x: str(x["Subject"]) == str(jm["Subject"]))
    check(jgot is not None, "claire.dupont+Junk@robot.test filed in robot's Junk folder")

    # Reply from the simulator.
    r_seen, reply = inbox.wait_for(lambda x: str(x.get("In-Reply-To", "")).strip("<> ") == qid)
    if check(reply is not None, "simulator reply to reply-d500 arrived in robot INBOX"):
        text = body_text(reply)
        check(email.utils.parseaddr(str(reply["From"]))[1] == branch, "reply From is the branch address")
        check(str(reply["Subject"]) == f"Re: Demande de tarif selftest {token}", "reply Subject is 'Re: <subject>'")
        check(f"<{qid}>" in str(reply.get("References", "")), "reply References holds the enquiry id")
        check(text.startswith("Bonjour Claire Dupont,"), "reply greets 'Bonjour Claire Dupont,'")
        check("tarif" in text and "€" in text, "reply quotes a price with 'tarif' and '€'")
        check("\n> Pourriez-vous" in text and "a écrit :" in text, "reply quotes the enquiry with '>' lines")
    rec = sim_record(env, qid)
    check(rec is not None, "sim.log.jsonl has the reply with its sent_at_ms")

    # DSN for the bounce.
    d_seen, dsn = inbox.wait_for(
        lambda x: x.get_content_type() == "multipart/report"
        and x.get_param("report-type") == "delivery-status"
        and bounce in x.as_string()
    )
    if check(dsn is not None, "Postfix DSN (multipart/report; delivery-status) for bounce* arrived"):
        status = [p for p in dsn.walk() if p.get_content_type() == "message/delivery-status"]
        s = status[0].as_string() if status else ""
        check(f"Final-Recipient: rfc822; {bounce}" in s and "Action: failed" in s,
              "DSN names the bounced branch address, Action: failed")
        check(str(dsn.get("Auto-Submitted", "")) == "auto-replied", "DSN carries Auto-Submitted: auto-replied")

    check_kinds(env, token, inbox, junk)
    check_tls(env, token, inbox)

    print("\nlatencies (ms):")
    if direct:
        print(f"  Postfix 250 -> visible to IMAP poll (direct, n={len(direct)}): "
              + ", ".join(f"{x:.0f}" for x in direct))
    if jgot is not None:
        print(f"  Postfix 250 -> visible in Junk: {j_seen - j_accepted:.0f}")
    if rec is not None:
        print(f"  enquiry 250 -> sim saw it: {rec['received_at_ms'] - q_accepted:.0f}")
        print(f"  enquiry 250 -> sim reply 250 (configured 500): {rec['sent_at_ms'] - q_accepted:.0f}")
        if reply is not None:
            print(f"  sim reply 250 -> visible in robot INBOX: {r_seen - rec['sent_at_ms']:.0f}")
    if dsn is not None:
        print(f"  bounce enquiry 250 -> DSN visible: {d_seen - b_accepted:.0f}")

    if FAILURES:
        print(f"\nselftest FAILED ({len(FAILURES)} check(s))", file=sys.stderr)
        sys.exit(1)
    print("\nselftest passed")


if __name__ == "__main__":
    main()
