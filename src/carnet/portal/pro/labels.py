"""Fixed texts of the professional portal, in French (the source language), translated when rendered.

``_`` only marks a text for the catalogue (``locale/en/LC_MESSAGES/pro.po``); templates translate the
value they show (``{{ _(labels.ACCESS_STATUS[status]) }}``). Value-set displays (document types,
classes, facility types …) are the official French ones of the ANS terminologies and are shown as is.
"""

from __future__ import annotations


def _(message: str) -> str:
    """Mark ``message`` for translation; it is translated where it is shown."""
    return message


# The professional's relationship to a record (extension record-access-status of the Patient, PDSm TD0.2).
ACCESS_STATUS = {
    "medecin-traitant": _("Médecin traitant"),
    "administrator": _("Professionnel administrateur désigné par le patient"),
    "authorization": _("Autorisé par le patient"),
    "care-team": _("Équipe de soins"),
    "break-glass": _("Accès en urgence (bris de glace)"),
    "regulation": _("Accès du centre de régulation (SAMU - centre 15)"),
    "none": _("Aucun accès"),
}
# Statuses that open the record's documents (the policy decides which ones).
OPEN_STATUSES = frozenset(ACCESS_STATUS) - {"none"}

AUTH_METHOD = {
    "certificate": _("Carte de professionnel de santé"),
    "oidc": _("Pro Santé Connect"),
    "demo": _("Démonstration (sans carte, développement seulement)"),
}

ACCESS_MODE = {
    "normal": _("Normal"),
    "break-glass": _("Urgence : bris de glace"),
    "regulation": _("Urgence : centre de régulation"),
}

EMERGENCY_MODE = {
    "break-glass": _("Bris de glace"),
    "regulation": _("Centre de régulation (SAMU - centre 15)"),
}

FLAGS = {
    "MASQUE_PS": _("Masqué aux professionnels"),
    "INVISIBLE_PATIENT": _("Invisible pour le patient jusqu'à l'annonce"),
    "INVISIBLE_REPRESENTANTS_LEGAUX": _("Invisible pour les représentants légaux"),
}

FLAG_HINTS = {
    "MASQUE_PS": _(
        "Seuls vous, votre structure, le médecin traitant et les professionnels administrateurs le verront."
    ),
    "INVISIBLE_PATIENT": _("Le patient ne le verra qu'après la consultation d'annonce, quand vous le rendrez visible."),
    "INVISIBLE_REPRESENTANTS_LEGAUX": _(
        "Pour un patient mineur : ses représentants légaux ne le verront jamais (soins confidentiels)."
    ),
}

LEVELS = {
    "N": _("Normal"),
    "R": _("Restreint"),
    "V": _("Très restreint"),
}

GENDER = {
    "female": _("Femme"),
    "male": _("Homme"),
    "other": _("Autre"),
    "unknown": _("Inconnu"),
}

IDENTITY_STATUS = {
    "PROV": _("Identité provisoire"),
    "RECUP": _("Identité récupérée"),
    "VALI": _("Identité validée"),
    "QUAL": _("Identité qualifiée"),
}

# Messages shown after an action (the redirect carries only their key: ``?fait=<key>``).
DONE = {
    "depot": _("Le document a été déposé dans le dossier."),
    "remplacement": _("La nouvelle version a été déposée ; elle remplace la précédente."),
    "suppression": _("Le document a été supprimé du dossier."),
    "annonce": _("Le document est maintenant visible par le patient."),
    "equipe": _("Vous êtes déclaré dans l'équipe de soins du patient."),
    "medecin-traitant": _("Vous êtes déclaré médecin traitant du patient."),
    "urgence": _("L'accès en urgence est ouvert, en lecture seule."),
    "deconnexion": _("Vous êtes déconnecté."),
}
