#!/usr/bin/env python3
"""Independent PSK AUTH vectors for ike/auth (psk_test.go), RFC 7296 section 2.15:

  InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
  AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <InitiatorSignedOctets>)

HMAC is written out here (RFC 2104 over hashlib) rather than taken from
Python's hmac module. Run: python3 gen_psk_vectors.py > psk_vectors.json
"""
import hashlib
import json
import sys

HASHES = {2: ("sha1", 64), 5: ("sha256", 64), 6: ("sha384", 128), 7: ("sha512", 128)}


def hmac(prf, key, msg):
    name, block = HASHES[prf]
    if len(key) > block:
        key = hashlib.new(name, key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.new(name, bytes(k ^ 0x36 for k in key) + msg).digest()
    return hashlib.new(name, bytes(k ^ 0x5C for k in key) + inner).digest()


cases = []
for prf in (2, 5, 6, 7):
    real = bytes(range(256)) * 2 + b"IKE_SA_INIT"       # stand-in for the IKE_SA_INIT message
    nonce = bytes((0x30 + i) & 0xFF for i in range(32))
    skp = bytes((0x70 + i) & 0xFF for i in range(HASHES[prf][0] == "sha1" and 20 or 32))
    id_type, id_data = 2, b"cpe1.example.net"            # ID_FQDN
    rest = bytes([id_type, 0, 0, 0]) + id_data
    octets = real + nonce + hmac(prf, skp, rest)
    psk = b"interop-psk-0123456789"
    auth = hmac(prf, hmac(prf, psk, b"Key Pad for IKEv2"), octets)
    cases.append({"prf": prf, "real": real.hex(), "nonce": nonce.hex(), "sk_p": skp.hex(),
                  "id": "fqdn:" + id_data.decode(), "psk": psk.decode(),
                  "octets": octets.hex(), "auth": auth.hex()})
json.dump(cases, sys.stdout, indent=1)
print()
