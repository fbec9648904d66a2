"""A NetEase server-API client written the way NetEase's own samples are: Python requests, a form body,
headers AppKey/Nonce/CurTime/CheckSum (CheckSum = sha1(AppSecret + Nonce + CurTime)), plus a RequestId header.

Usage: netease_client.py BASE_URL APP_KEY APP_SECRET
Calls getToken once per Content-Type variant with a fresh 128-character nonce, then the same uid and room again,
and prints a JSON list of {content_type, status, content_type_header, body}.
"""
import hashlib
import json
import random
import string
import sys
import time

import requests


def headers(app_key, secret, content_type):
    nonce = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(128))
    cur_time = str(int(time.time()))
    check_sum = hashlib.sha1((secret + nonce + cur_time).encode("utf-8")).hexdigest()
    out = {
        "AppKey": app_key,
        "Nonce": nonce,
        "CurTime": cur_time,
        "CheckSum": check_sum,
        "RequestId": "req-" + nonce[:8],
        "User-Agent": "nim-server-sample/1.0",
    }
    if content_type is not None:
        out["Content-Type"] = content_type
    return out


def main():
    base, app_key, secret = sys.argv[1:4]
    url = base + "/nimserver/user/getToken.action"
    results = []
    variants = [
        "application/x-www-form-urlencoded;charset=utf-8",
        "application/x-www-form-urlencoded;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded;",
        None,  # requests sets application/x-www-form-urlencoded itself for a dict body
    ]
    for i, content_type in enumerate(variants):
        data = {"uid": str(900 + i), "channelName": "sample-room", "expireAt": "1800", "repeatUse": "true"}
        r = requests.post(url, headers=headers(app_key, secret, content_type), data=data, timeout=10)
        results.append(
            {"content_type": content_type, "status": r.status_code,
             "content_type_header": r.headers.get("Content-Type"), "body": r.json()}
        )
    again = requests.post(
        url,
        headers=headers(app_key, secret, variants[0]),
        data={"uid": "900", "channelName": "sample-room", "expireAt": "1800"},
        timeout=10,
    )
    results.append({"content_type": "again", "status": again.status_code,
                    "content_type_header": again.headers.get("Content-Type"), "body": again.json()})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
