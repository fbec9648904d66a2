"""Checks a tokenmint-minted Access Token with Twilio's official helper library.

Reads JSON from stdin: {token, secret, account_sid, key_sid, request}, where request is the body sent to
POST /twilio/v1/tokens. Verifies the token with AccessToken.from_jwt (exits 1 with the library's error when it
refuses), mints the library's own token for the same request, and prints both decoded tokens as JSON.
"""
import json
import sys

import jwt as pyjwt
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import (
    ChatGrant,
    PlaybackGrant,
    SyncGrant,
    TaskRouterGrant,
    VideoGrant,
    VoiceGrant,
)


def library_token(inp):
    req = inp["request"]
    token = AccessToken(
        inp["account_sid"],
        inp["key_sid"],
        inp["secret"],
        identity=req.get("identity"),
        ttl=req.get("ttl", 3600),
        region=req.get("region"),
    )
    grants = req.get("grants", {})
    if "chat" in grants:
        token.add_grant(ChatGrant(**grants["chat"]))
    if "video" in grants:
        token.add_grant(VideoGrant(**grants["video"]))
    if "voice" in grants:
        v = grants["voice"]
        outgoing = v.get("outgoing", {})
        token.add_grant(
            VoiceGrant(
                incoming_allow=v.get("incoming", {}).get("allow"),
                outgoing_application_sid=outgoing.get("application_sid"),
                outgoing_application_params=outgoing.get("params"),
                push_credential_sid=v.get("push_credential_sid"),
                endpoint_id=v.get("endpoint_id"),
            )
        )
    if "data_sync" in grants:
        token.add_grant(SyncGrant(**grants["data_sync"]))
    if "task_router" in grants:
        token.add_grant(TaskRouterGrant(**grants["task_router"]))
    if "player" in grants:
        token.add_grant(PlaybackGrant(grant=grants["player"]))
    return token.to_jwt()


def decoded(token):
    return {
        "header": pyjwt.get_unverified_header(token),
        "payload": pyjwt.decode(token, options={"verify_signature": False}),
    }


def main():
    inp = json.load(sys.stdin)
    try:
        AccessToken.from_jwt(inp["token"], inp["secret"])
    except Exception as e:  # the library's own verdict, reported verbatim
        print(f"from_jwt refused the token: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"verified": True, "ours": decoded(inp["token"]), "library": decoded(library_token(inp))}))


if __name__ == "__main__":
    main()
