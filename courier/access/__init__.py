"""Answering people at a cabinet, one module per way in:

- `codes`: a recipient types a pickup code;
- `couriers`: a courier logs in with badge and PIN to deposit or collect;
- `faces`: a recipient (pickup) or a verified sender (drop-off) looks at the camera;
- `attempts`: what they share: the attempt record, lockouts, staleness, the answer.

Every attempt is recorded (figures, never the image or the code); every answer reaches the
cabinet after commit and before the unlock it announces; doors open only through stored,
signed unlock commands.
"""
