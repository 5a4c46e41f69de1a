# One entry point for people and CI alike. `make help` lists the targets.
.PHONY: help run test test-rust check bench bench-api bench-votes bench-platform lint fmt deny check-workflows release-rehearsal images check-images check-observability check-charts check-ops check-dlq

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

run: ## build and run the four services locally against RabbitMQ and MongoDB (Ctrl-C stops them)
	@scripts/run-local.sh

test: ## run every test: the Rust suite against the real RabbitMQ and MongoDB (or the stand-in), then the delivery checks
	@$(MAKE) --no-print-directory test-rust
	@$(MAKE) --no-print-directory check

test-rust: ## the Rust tests only, starting RabbitMQ and the MongoDB stand-in if they are missing
	@eval "$$(scripts/test-deps.sh)" && scripts/sweep-test-queues.sh && cargo build --workspace --bins --locked && cargo nextest run --workspace --locked

# Each delivery area adds its own check-<area> target here; every one installs
# its pinned tools (scripts/tools/) before it runs.
check: check-workflows check-images check-observability check-charts check-ops check-api check-docs-page ## delivery checks: observability, images, charts, workflows, operations

bench: ## print AMQP throughput (raw lapin versus palm-amqp), then the palmdao API and vote pipeline benchmarks
	@eval "$$(scripts/test-deps.sh)" && cargo bench --locked -p palm-amqp --bench amqp_throughput
	@$(MAKE) --no-print-directory bench-api
	@$(MAKE) --no-print-directory bench-votes
	@$(MAKE) --no-print-directory bench-platform

bench-api: ## print palmdao API requests/s, p50/p99 latency and MongoDB round trips per request
	@eval "$$(scripts/test-deps.sh)" && cargo build --release --locked -p palmdao --bin palmdao && cargo bench --locked -p palm-tests --bench palmdao_api

lint: ## formatting and clippy, as CI runs them
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt: ## format the code
	cargo fmt --all

deny: ## licenses, advisories and banned crates (needs cargo-deny)
	cargo deny check

bench-votes: ## vote pipeline with 1 and 2 validators: votes/s (submit → counted), p50/p99 at half that rate, MongoDB commands and stack CPU per vote, votes/s ÷ the database's single-command rate, latency and bytes with 100k ballots ÷ none, idle commands/s of two replicas; a goal table
	@eval "$$(scripts/test-deps.sh)" && cargo build --release --locked -p palmdao -p palmvalidator --bins && cargo bench --locked -p palm-tests --bench vote_pipeline

bench-platform: ## print one platform snapshot refresh's time and MongoDB commands at three data sizes, and an idle standby's commands/s
	@eval "$$(scripts/test-deps.sh)" && cargo build --release --locked -p palmplatformmetrics --bin palmplatformmetrics && cargo bench --locked -p palm-tests --bench platform_refresh

check-workflows: ## actionlint + shellcheck on every workflow, SHA pins, the values bump/tag tests
	@scripts/release/check-workflows.sh

release-rehearsal: ## the release path locally: images → loopback registry → dev values bump → rendered charts → podman pull/run
	@scripts/release/rehearsal.sh

images: ## build the four service images locally with buildah (palm/<service>:<version>-<date>) and print their sizes
	@scripts/images/build.sh >/dev/null

check-images: ## Dockerfile and compose checks; each image run read-only under podman against RabbitMQ and MongoDB
	@scripts/images/check.sh

check-observability: ## dashboards, alert rules (promtool), runbooks, Alertmanager routes (amtool); every query against a real Prometheus scraping the four services and RabbitMQ
	@scripts/observability/check.sh

check-charts: ## helm lint, every chart × environment rendered and validated (Kubernetes 1.33, CRDs, checkov), invariants, --check-config of every rendered env, ArgoCD dry run
	@scripts/charts/check.sh

check-ops: ## backups and restore (S3 side against moto, verification against the test database), palm-backup chart, Uptime Kuma declaration, shellcheck
	@scripts/backup/check.sh

check-dlq: ## (also in test-rust) palmctl dlq against the real broker: reading leaves a DLQ unchanged (even under a delivery limit), a replayed message is processed once, dry run changes nothing, purge needs confirmation
	@eval "$$(scripts/test-deps.sh)" && cargo build --locked -p palmctl && cargo nextest run --locked -p palm-amqp --test dlq && cargo nextest run --locked -p palm-tests --test palmctl_dlq

.PHONY: check-api
check-api: ## API fuzzing: schemathesis over palmdao's /openapi.json, every operation and check, without and with a session; zero failures
	@cargo build --locked -p palmdao -p palmctl --bins && scripts/api-fuzz/run.sh

.PHONY: check-docs-page
check-docs-page: ## palmdao's /docs offline: vendored Swagger UI matches its pins; headless Chromium (network refused) lists every operation and schema, no CSP violation or console error
	@cargo build --locked -p palmdao --bin palmdao && scripts/docs-page/check.sh
