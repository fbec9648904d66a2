#!/usr/bin/env python3
"""Writes N signed NetEase getToken requests for the load benchmark, one per line: `nonce curtime checksum uid`.

wrk's Lua cannot compute SHA-1, so each request's headers are made ahead: a fresh Nonce per request, CurTime now
(the run must start within netease.curtime_window_secs), CheckSum = SHA1(AppSecret + Nonce + CurTime), and a new
uid per request (from FIRST_UID up).

    tests/bench/netease_requests.py N OUT [FIRST_UID]
"""
import hashlib
import os
import sys
import time

SECRET = "sample-netease-secret-not-for-production"


def main():
    count, out = int(sys.argv[1]), sys.argv[2]
    first_uid = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    cur_time = str(int(time.time()))
    with open(out, "w") as f:
        for i in range(count):
            nonce = os.urandom(12).hex()
            checksum = hashlib.sha1(f"{SECRET}{nonce}{cur_time}".encode()).hexdigest()
            f.write(f"{nonce} {cur_time} {checksum} {first_uid + i}\n")


main()
