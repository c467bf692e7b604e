"""A throwaway CA and two server certificates for the TLS syslog tests."""

import datetime
import ipaddress
import os


def make_pki(tmp, good_ip, bad_ip, bad_name="other.example"):
    """Write ``tmp/ca.pem``; return ``(ca_file, good, bad)`` where ``good``
    is a key+certificate PEM naming ``good_ip`` and ``bad`` one naming
    ``bad_name``/``bad_ip`` instead, both signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject, issuer, public_key):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1)))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (builder(name("cbac test CA"), name("cbac test CA"), ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn, sans):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (builder(name(cn), ca.subject, key.public_key())
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return (key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())
                + cert.public_bytes(serialization.Encoding.PEM))

    os.makedirs(tmp, exist_ok=True)
    ca_file = os.path.join(tmp, "ca.pem")
    with open(ca_file, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    good = leaf(good_ip, [x509.IPAddress(ipaddress.IPv4Address(good_ip))])
    bad = leaf(bad_name, [x509.DNSName(bad_name), x509.IPAddress(ipaddress.IPv4Address(bad_ip))])
    return ca_file, good, bad
