"""The professional portal (``/pro``): sign in with a card or Pro Santé Connect, find a patient by INS,
read the record the access policy opens, deposit, replace and delete documents, declare consent and
care-team membership, become médecin traitant, open an emergency access, lift INVISIBLE_PATIENT after
the announcement consultation.

``routes`` (thin HTTP), ``session`` (the signed-in professional, token renewal), ``forms`` (what was
typed and the services' refusals tied to fields), ``views`` (what templates receive), ``labels``
(fixed French texts, translated in ``locale/en/LC_MESSAGES/pro.po``); templates in
``templates/pro/``, styles in ``static/pro.css``.
"""
