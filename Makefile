# One entry point for people and CI alike. `make help` lists the targets.
.PHONY: help run test bench lint fmt deny

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

run: ## build and run the four services locally against RabbitMQ and MongoDB (Ctrl-C stops them)
	@scripts/run-local.sh

test: ## run every test against the real RabbitMQ and MongoDB (or the stand-in), starting what is missing
	@eval "$$(scripts/test-deps.sh)" && cargo build --workspace --bins --locked && cargo nextest run --workspace --locked

bench: ## print AMQP throughput: raw lapin versus palm-amqp
	@eval "$$(scripts/test-deps.sh)" && cargo bench --locked -p palm-amqp --bench amqp_throughput

lint: ## formatting and clippy, as CI runs them
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt: ## format the code
	cargo fmt --all

deny: ## licenses, advisories and banned crates (needs cargo-deny)
	cargo deny check
