#!/usr/bin/env bash
# Seeds a running Palm (palmdao + palmvalidator) through its public API with
# palmctl, so backups and restores are exercised on documents exactly as the
# services write them: PalmIDs, a community with members, a discussion, and
# proposals that close with votes in them — including a PalmID that votes
# twice (the later signed vote must be the one counted), a weighted vote
# (voting power split over choices) and a rejected vote. Waits until every
# vote is decided and every proposal is closed, then prints one JSON line:
#   {"community": SLUG, "proposals": [ID, ...], "votes": N}
#
# Environment: PALMCTL (default: palmctl on PATH), PALMCTL_API (default
# http://127.0.0.1:8080), SEED_TAG (makes the keys and slug unique; default:
# the current time), SEED_VOTING_SECS (how long the proposals stay open,
# default 12).
set -euo pipefail

palmctl="${PALMCTL:-palmctl}"
tag="${SEED_TAG:-$(date +%s)}"
open_secs="${SEED_VOTING_SECS:-12}"
slug="$(printf 'drill-%s' "$tag" | tr 'A-Z_.' 'a-z--' | cut -c1-40)"
log() { echo "seed: $*" >&2; }

as() { # as WHO palmctl-args...: runs palmctl signed in as WHO
  local who="$1"; shift
  local token_var="token_${who}"
  PALMCTL_SEED="$who-$tag" PALMCTL_TOKEN="${!token_var}" "$palmctl" "$@"
}
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

for who in alice bob carol dave; do
  token="$(PALMCTL_SEED="$who-$tag" "$palmctl" login 2>/dev/null)"
  printf -v "token_${who}" '%s' "$token"
done
log "signed in alice, bob, carol, dave ($tag)"

as alice post /v1/communities "{\"slug\": \"$slug\", \"name\": \"Drill $tag\"}" >/dev/null
for who in bob carol dave; do as "$who" post "/v1/communities/$slug/join" >/dev/null; done
discussion="$(as alice post "/v1/communities/$slug/discussions" '{"title": "Which trees?", "body": "apples or pears"}' | json_field id)"

start="$(date -u +%FT%TZ)"
end="$(date -u -d "+$open_secs seconds" +%FT%TZ)"
single="$(as alice post "/v1/communities/$slug/proposals" "{\"title\": \"Plant apple trees?\",
  \"choices\": [\"yes\", \"no\", \"later\"], \"voting_type\": \"single-choice\",
  \"start\": \"$start\", \"end\": \"$end\", \"discussion_id\": \"$discussion\"}" | json_field id)"
weighted="$(as alice post "/v1/communities/$slug/proposals" "{\"title\": \"Split the budget\",
  \"choices\": [\"trees\", \"benches\"], \"voting_type\": \"weighted\",
  \"start\": \"$start\", \"end\": \"$end\"}" | json_field id)"
log "community $slug, proposals $single (single-choice) and $weighted (weighted), open until $end"

votes=() # WHO:VOTE_ID, WHO being the PalmID that may read the vote back
vote() { votes+=("$1:$(as "$1" vote "$2" "$3" | json_field id)"); }
vote bob "$single" 1
sleep 1.1 # a later signed timestamp: bob's second vote supersedes his first
vote bob "$single" 2
vote carol "$single" 1
vote dave "$single" 3
vote alice "$single" 2
vote bob "$weighted" '{"1": 3, "2": 1}'
vote carol "$weighted" '{"2": 1}'
# A vote signed for a proposal its signer may vote on, but by a key that is
# not the signed-in PalmID's wallet: palmvalidator rejects it.
votes+=("dave:$(PALMCTL_SEED="mallory-$tag" PALMCTL_TOKEN="$token_dave" "$palmctl" vote "$weighted" '{"1": 1}' | json_field id)")
log "${#votes[@]} votes submitted"

deadline=$((SECONDS + open_secs + 90))
for entry in "${votes[@]}"; do
  who="${entry%%:*}" id="${entry#*:}"
  until [[ "$(as "$who" get "/v1/votes/$id" | json_field status)" =~ ^(valid|rejected)$ ]]; do
    ((SECONDS < deadline)) || { log "vote $id still undecided"; exit 1; }
    sleep 0.5
  done
done
log "every vote decided"
for id in "$single" "$weighted"; do
  until [[ "$("$palmctl" get "/v1/proposals/$id/results" | json_field final)" == True ]]; do
    ((SECONDS < deadline)) || { log "proposal $id did not close"; exit 1; }
    sleep 0.5
  done
done
log "both proposals closed"
printf '{"community": "%s", "proposals": ["%s", "%s"], "votes": %d}\n' \
  "$slug" "$single" "$weighted" "${#votes[@]}"
