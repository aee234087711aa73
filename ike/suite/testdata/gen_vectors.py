#!/usr/bin/env python3
"""Independent IKEv2 key derivation vectors for ike/suite (kdf_test.go).

Computes, with its own HMAC (RFC 2104 over hashlib digests, not Python's hmac
module) and Python integers, the values RFC 7296 defines:

  SKEYSEED = prf(Ni | Nr, g^ir)                                    (2.14)
  {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
           = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)                   (2.14)
  rekey:   SKEYSEED = prf_old(SK_d old, g^ir new | Ni | Nr)         (2.18)
  KEYMAT = prf+(SK_d, [g^ir new |] Ni | Nr)                         (2.17)
  MODP group 14 public values and shared secrets (RFC 3526), padded to 256 octets

Inputs are fixed byte patterns so the output is reproducible:

  python3 gen_vectors.py > vectors.json
"""
import hashlib
import json

HASHES = {  # IANA PRF id -> (hashlib name, block size, preferred key length)
    2: ("sha1", 64, 20),
    5: ("sha256", 64, 32),
    6: ("sha384", 128, 48),
    7: ("sha512", 128, 64),
}


def hmac(prf, key, msg):
    name, block, _ = HASHES[prf]
    if len(key) > block:
        key = hashlib.new(name, key).digest()
    key = key.ljust(block, b"\x00")
    ipad = bytes(k ^ 0x36 for k in key)
    opad = bytes(k ^ 0x5C for k in key)
    inner = hashlib.new(name, ipad + msg).digest()
    return hashlib.new(name, opad + inner).digest()


def prf_plus(prf, key, seed, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac(prf, key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:n]


def pattern(start, n):
    return bytes((start + i) & 0xFF for i in range(n))


# (name, encr id, key bits, prf id, integ id, SK_e length incl. salt, SK_a length)
SUITES = [
    ("aes128-sha1", 12, 128, 2, 2, 16, 20),
    ("aes256-sha256", 12, 256, 5, 12, 32, 32),
    ("aes256-sha384", 12, 256, 6, 13, 32, 48),
    ("aes128gcm16-prfsha256", 20, 128, 5, 0, 20, 0),
    ("aes256gcm16-prfsha384", 20, 256, 6, 0, 36, 0),
    ("chacha20poly1305-prfsha512", 28, 0, 7, 0, 36, 0),
]

# ESP suites for KEYMAT: (name, encr, key bits, integ, encr key incl. salt, integ key)
ESP = [
    ("aes256gcm16", 20, 256, 0, 36, 0),
    ("aes128-sha256", 12, 128, 12, 16, 32),
]


def ike_keys(prf, skeyseed, ni, nr, spii, spir, el, il):
    pl = HASHES[prf][2]
    seed = ni + nr + spii.to_bytes(8, "big") + spir.to_bytes(8, "big")
    km = prf_plus(prf, skeyseed, seed, 3 * pl + 2 * il + 2 * el)
    names = [("sk_d", pl), ("sk_ai", il), ("sk_ar", il), ("sk_ei", el), ("sk_er", el), ("sk_pi", pl), ("sk_pr", pl)]
    out, off = {}, 0
    for n, l in names:
        out[n] = km[off:off + l].hex()
        off += l
    return out


def main():
    cases = []
    for idx, (name, encr, bits, prf, integ, el, il) in enumerate(SUITES):
        ni, nr = pattern(0x10 + idx, 32), pattern(0xA0 + idx, 48)
        shared = pattern(0x40 + idx, 256 if idx % 2 else 32)
        spii, spir = 0x0123456789ABCDEF + idx, 0xFEDCBA9876543210 - idx
        skeyseed = hmac(prf, ni + nr, shared)
        keys = ike_keys(prf, skeyseed, ni, nr, spii, spir, el, il)

        # rekey into the next suite (so the old and new PRFs differ)
        nname, nencr, nbits, nprf, ninteg, nel, nil_ = SUITES[(idx + 1) % len(SUITES)]
        rni, rnr = pattern(0x21 + idx, 32), pattern(0x31 + idx, 32)
        rshared = pattern(0x51 + idx, 64)
        rspii, rspir = 0x1111111111111111 * (idx + 1), 0x2222222222222222 + idx
        sk_d = bytes.fromhex(keys["sk_d"])
        rseed = hmac(prf, sk_d, rshared + rni + rnr)
        rkeys = ike_keys(nprf, rseed, rni, rnr, rspii, rspir, nel, nil_)

        child = []
        for ename, eencr, ebits, einteg, eel, eil in ESP:
            for pfs in (False, True):
                cni, cnr = pattern(0x61 + idx, 32), pattern(0x71 + idx, 32)
                cshared = pattern(0x81 + idx, 32) if pfs else b""
                km = prf_plus(prf, sk_d, cshared + cni + cnr, 2 * (eel + eil))
                child.append({
                    "esp": {"encr": eencr, "key_bits": ebits, "integ": einteg}, "name": ename,
                    "shared": cshared.hex(), "ni": cni.hex(), "nr": cnr.hex(),
                    "spi_i": 0xC0000001 + idx, "spi_r": 0xD0000002 + idx,
                    "encr_i": km[:eel].hex(), "integ_i": km[eel:eel + eil].hex(),
                    "encr_r": km[eel + eil:2 * eel + eil].hex(), "integ_r": km[2 * eel + eil:].hex(),
                })

        cases.append({
            "name": name,
            "suite": {"encr": encr, "key_bits": bits, "prf": prf, "integ": integ},
            "shared": shared.hex(), "ni": ni.hex(), "nr": nr.hex(),
            "spi_i": "%016x" % spii, "spi_r": "%016x" % spir,
            "skeyseed": skeyseed.hex(), "keys": keys,
            "rekey": {
                "suite": {"encr": nencr, "key_bits": nbits, "prf": nprf, "integ": ninteg},
                "shared": rshared.hex(), "ni": rni.hex(), "nr": rnr.hex(),
                "spi_i": "%016x" % rspii, "spi_r": "%016x" % rspir,
                "skeyseed": rseed.hex(), "keys": rkeys,
            },
            "child": child,
        })

    # MODP group 14 (RFC 3526 section 3), generator 2
    p = int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
        "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
        "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
    modp = []
    for idx in range(3):
        xa, xb = pattern(0x05 + 7 * idx, 32), pattern(0x90 + 11 * idx, 32)  # 256-bit exponents
        a, b = int.from_bytes(xa, "big"), int.from_bytes(xb, "big")
        ya, yb = pow(2, a, p), pow(2, b, p)
        z = pow(yb, a, p)
        assert z == pow(ya, b, p)
        modp.append({"x_a": xa.hex(), "x_b": xb.hex(),
                     "y_a": ya.to_bytes(256, "big").hex(), "y_b": yb.to_bytes(256, "big").hex(),
                     "shared": z.to_bytes(256, "big").hex()})

    json.dump({"generator": "gen_vectors.py", "ike": cases, "modp2048": modp}, __import__("sys").stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
