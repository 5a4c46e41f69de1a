"""schemathesis hooks for scripts/api-fuzz/run.sh (make check-api).

One check is added to the built-in ones (which all stay on): a schema-valid
request may be refused with 400 or 422 only for a rule that a JSON Schema
cannot state, and then only with that rule's own stable `code`. The
operations listed here are the only ones whose `positive_data_acceptance`
also allows 400/422 (scripts/api-fuzz/schemathesis.toml); this check keeps
that allowance to exactly these codes, so any other refusal of valid data
still fails the run. The reasons are in
docs/adr/0025-api-fuzzing-with-schemathesis.md.
"""

import schemathesis

# operationId -> the codes of rules beyond the schema.
RULES_BEYOND_THE_SCHEMA = {
    # EIP-4361's grammar needs an EIP-55 checksummed address (a keccak-256
    # hash of the text), RFC 3986 URIs and RFC 3339 times; a random r and s
    # are mostly no point of secp256k1.
    "signIn": {"siwe_malformed", "siwe_malformed_signature"},
    "requestVerification": {"siwe_malformed"},
    # `end` after `start` and after now; a discussion of this community.
    "createProposal": {"invalid_window", "discussion_not_in_community"},
    # Whether a choice fits depends on the proposal it votes on; a random r
    # and s are often out of range or a high s (EIP-2).
    "castVote": {"choice_does_not_fit", "signature_not_canonical"},
}


@schemathesis.check
def refusals_of_valid_data_name_a_rule_beyond_the_schema(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code not in (400, 422):
        return None
    operation_id = case.operation.definition.raw.get("operationId")
    allowed = RULES_BEYOND_THE_SCHEMA.get(operation_id, set())
    try:
        code = response.json().get("code")
    except Exception:  # noqa: BLE001 - any unreadable body fails below
        code = None
    if code not in allowed:
        raise AssertionError(
            f"{operation_id} refused schema-valid data with {response.status_code} "
            f"code {code!r}; only {sorted(allowed) or 'nothing'} may refuse valid data here"
        )
    return None
