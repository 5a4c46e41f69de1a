#!/usr/bin/env python3
"""Offline tests of ops/uptime-kuma (no Uptime Kuma server can run here):
the declaration passes --check and lists exactly the services of the
workspace (services/*); --check fails, naming the problem, for a missing
readiness monitor, an option the client does not know, a readiness URL off
the admin port, an unknown ${VAR}, a monitor off the status page; and
apply() against a recording stand-in of the client adds everything on the
first run, only edits on the second (idempotent), expands ${VAR}s, alerts
every monitor through the Telegram notification, and fills the status page
groups in order."""

import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apply as kuma  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
passed = 0


def ok(name, condition, detail=""):
    global passed
    if not condition:
        print(f"FAIL {name}\n{detail}", file=sys.stderr)
        sys.exit(1)
    passed += 1
    print(f"ok   {name}")


declaration = kuma.load(kuma.DEFAULT_FILE)
ok("monitors.yaml passes --check", kuma.check(declaration) == [], kuma.check(declaration))
workspace = sorted(d for d in os.listdir(os.path.join(ROOT, "services"))
                   if os.path.isfile(os.path.join(ROOT, "services", d, "Cargo.toml")))
ok("it lists exactly the workspace's services", sorted(declaration["services"]) == workspace,
   f"{declaration['services']} vs {workspace}")


def broken(name, mutate, needle):
    d = copy.deepcopy(declaration)
    mutate(d)
    problems = kuma.check(d)
    ok(f"--check refuses {name}", any(needle in p for p in problems), problems)


broken("a service without a readiness monitor",
       lambda d: d["monitors"].remove(next(m for m in d["monitors"] if m.get("readiness_of") == "palmvalidator")),
       "service palmvalidator has no readiness monitor")
broken("an option the client does not know",
       lambda d: d["monitors"][0].update(intervall=30), "intervall is not a monitor option")
broken("a readiness URL off the admin port",
       lambda d: next(m for m in d["monitors"] if m.get("readiness_of") == "palmdao").update(
           url="http://palmdao.${PALM_NAMESPACE}.svc.cluster.local:8080/readyz"),
       "the readiness monitor of palmdao must GET")
broken("an unknown ${VAR}",
       lambda d: d["monitors"][0].update(url="https://${API_HOST}/v1/auth/nonce"), "${API_HOST} is not set")
broken("a monitor off the status page",
       lambda d: d["monitors"][0].update(group="Elsewhere"), "is not on the status page")
broken("no public API monitor",
       lambda d: d.update(monitors=[m for m in d["monitors"] if "PUBLIC_API_HOST" not in m["url"]]),
       "no monitor of the public API")


class FakeKuma:
    """Records calls the way the client's server would answer them."""

    def __init__(self):
        self.monitors, self.notifications, self.pages, self.calls = {}, {}, {}, []

    def get_notifications(self):
        return [{"id": i, **n} for i, n in self.notifications.items()]

    def add_notification(self, **f):
        i = len(self.notifications) + 1
        self.notifications[i] = f
        self.calls.append("add_notification")
        return {"id": i}

    def edit_notification(self, id_, **f):
        self.notifications[id_] = f
        self.calls.append("edit_notification")

    def get_monitors(self):
        return [{"id": i, **m} for i, m in self.monitors.items()]

    def add_monitor(self, **m):
        i = len(self.monitors) + 1
        self.monitors[i] = m
        self.calls.append("add_monitor")
        return {"monitorID": i}

    def edit_monitor(self, id_, **m):
        self.monitors[id_] = m
        self.calls.append("edit_monitor")

    def get_status_pages(self):
        return [{"slug": s} for s in self.pages]

    def add_status_page(self, slug, title):
        self.pages[slug] = {"title": title}
        self.calls.append("add_status_page")

    def save_status_page(self, slug, **f):
        self.pages[slug].update(f)
        self.calls.append("save_status_page")


env = {"PUBLIC_API_HOST": "api.palm.example", "PALM_NAMESPACE": "palm-prod",
       "TELEGRAM_BOT_TOKEN": "123:abc", "TELEGRAM_CHAT_ID": "-100"}
fake = FakeKuma()
first = kuma.apply(fake, declaration, env)
n = len(declaration["monitors"])
ok("the first apply adds the notification and every monitor", first == {"added": n + 1, "edited": 0}, first)
second = kuma.apply(fake, declaration, env)
ok("a second apply edits in place, adds nothing", second == {"added": 0, "edited": n + 1}
   and len(fake.monitors) == n and fake.calls.count("add_status_page") == 1, (second, fake.calls))
urls = sorted(m["url"] for m in fake.monitors.values())
ok("${VAR}s expanded", "https://api.palm.example/v1/auth/nonce" in urls
   and "http://palmdao.palm-prod.svc.cluster.local:9090/readyz" in urls, urls)
ok("every monitor alerts through the Telegram notification",
   all(m["notificationIDList"] == [1] for m in fake.monitors.values())
   and fake.notifications[1]["telegramBotToken"] == "123:abc", fake.monitors)
page = fake.pages["palm"]
ok("the status page shows every monitor, grouped in order",
   [g["name"] for g in page["publicGroupList"]] == ["Public API", "Services"]
   and sum(len(g["monitorList"]) for g in page["publicGroupList"]) == n, page)
try:
    kuma.apply(FakeKuma(), declaration, {k: v for k, v in env.items() if k != "PALM_NAMESPACE"})
    ok("an unset ${VAR} stops the apply", False)
except kuma.DeclarationError as error:
    ok("an unset ${VAR} stops the apply", "PALM_NAMESPACE" in str(error), str(error))
print(f"uptime-kuma: {passed} checks passed")
