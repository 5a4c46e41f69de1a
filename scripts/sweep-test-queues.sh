#!/usr/bin/env bash
# Deletes the queues earlier test runs left on the local RabbitMQ: those of
# the per-test prefixes (`t-…`, palm-testkit's unique_prefix) and of the
# release rehearsal (`palm-rh…`) that no consumer is reading. A test that
# fails or times out skips its teardown; on a long-lived broker (this
# machine, where CI runs too) hundreds of idle quorum queues accumulate and
# slow every declaration until connecting takes longer than the services'
# 15 s connect timeout. One `rabbitmqctl eval` deletes them all in seconds.
# Runs only against the local broker (not when PALM_AMQP_URL names another);
# prints how many it deleted. Idempotent.
set -euo pipefail
if [[ -n "${PALM_AMQP_URL:-}" && "$PALM_AMQP_URL" != *"@127.0.0.1:5672/"* ]]; then
  exit 0
fi
command -v rabbitmqctl >/dev/null || exit 0
deleted="$(timeout 300 rabbitmqctl eval '
  Prefixes = [<<"t-">>, <<"palm-rh">>],
  Leftover = [Q || Q <- rabbit_amqqueue:list(<<"/">>),
                   begin
                     Name = element(4, amqqueue:get_name(Q)),
                     lists:any(fun(P) -> binary:longest_common_prefix([Name, P]) =:= byte_size(P) end, Prefixes)
                   end,
                   proplists:get_value(consumers, rabbit_amqqueue:info(Q, [consumers]), 0) =:= 0],
  [catch rabbit_amqqueue:delete(Q, false, false, <<"palm-test-sweep">>) || Q <- Leftover],
  length(Leftover).' 2>/dev/null || echo "?")"
echo "sweep-test-queues: deleted $deleted idle test queues" >&2
