"""The portals: server-rendered web pages for patients (``/patient``) and professionals (``/pro``).

They call the same services as the FHIR API, through the same access policy, and add no rule of
their own. Shared pieces: ``web`` (rendering, headers), ``csrf``, ``i18n``, ``deps`` (who is signed in),
``routes`` (landing page, language, errors); templates in ``templates/``, CSS and scripts in ``static/``.
"""
