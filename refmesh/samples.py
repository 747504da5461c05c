"""Synthetic sample records for the demo, tests and benchmarks. No real person's data.

Every value is invented; names come from a list of plainly fictional placeholders.
"""
from __future__ import annotations

FICTIONAL_GIVEN = ("Amina", "Tigist", "Maricel", "Sunita", "Dewi", "Nirmala", "Hana", "Lalita")
FICTIONAL_FAMILY = ("Example", "Sample", "Testcase", "Placeholder", "Fictive", "Demo")


def referral(referral_id: str = "00000000-0000-4000-8000-000000000001",
             sender: str = "BH/NGO/HOTLINE", recipient: str = "BH/NGO/SHELTER",
             created_at: int = 1_790_000_000_000, n: int = 0, **overrides) -> dict:
    """A full referral (every field filled) as a dict of the Referral contract."""
    value = {
        "referralId": referral_id,
        "caseRef": f"HL-2026-{n:05d}",
        "subjectId": f"subj-{n:06d}",
        "senderAgency": sender,
        "recipientAgency": recipient,
        "senderCaseWorker": "cw-0042",
        "trmStage": "FirstAssistance",
        "purpose": "Services",
        "legalBasis": "Consent",
        "consentId": f"consent-{n:06d}",
        "consentVersion": 1,
        "createdAt": created_at,
        "service": {
            "reason": "AdditionalServicesRequired",
            "services": ["Shelter", "Interpreter"],
            "urgency": "Urgent",
            "dueDate": "2026-12-01",
            "details": "Needs a safe room tonight; arrives with one child.",
        },
        "person": {
            "firstName": FICTIONAL_GIVEN[n % len(FICTIONAL_GIVEN)],
            "middleName": None,
            "secondName": FICTIONAL_FAMILY[n % len(FICTIONAL_FAMILY)],
            "birthdate": "1998-04-17",
            "ageBand": None,
            "gender": "Feminine",
            "citizenship": ["ET"],
            "primaryLanguage": "amh",
            "secondaryLanguage": "ara",
            "maritalStatus": "Single",
            "numberOfChildren": 1,
            "identityNumber": "EP0000000",
            "email": "nobody@example.invalid",
            "mobilePhone": "+97300000000",
            "homePhone": None,
            "mailingStreet": "1 Example Road",
            "mailingCity": "Manama",
            "mailingState": None,
            "mailingPostalCode": "000",
            "mailingCountry": "BH",
        },
        "victim": {
            "traffickingStatus": "PossibleVictimOfTrafficking",
            "traffickingStatusDecisionMakingOrg": "NGO",
            "relationshipToTrafficker": "Acquainted",
            "ageWhenTrafficked": 26,
            "methodOfRecruitment": ["ThroughFriendsOrSocialEvents"],
            "methodsOfControl": ["WithholdsDocuments", "ExcessiveWorkingHours"],
            "typeOfExploitation": ["ForcedLabour"],
            "forcedLabourIndustry": "T_ActivitiesOfHouseholdsAsEmployers",
            "typeOfSexExploitation": None,
            "countryOfExploitation": "BH",
            "cityOfExploitation": "Manama",
            "caseComment": "Passport withheld by employer.",
        },
        "needs": {
            "supportTypes": ["SocialCare", "Health"],
            "objectives": "Safe accommodation and medical check.",
            "interpreterLanguage": "amh",
            "medicalNotes": "Minor injury to the left hand.",
            "safetyRisk": "High",
        },
    }
    value.update(overrides)
    return value


def consent(n: int = 0, controller: str = "BH/NGO/HOTLINE", valid_from: int = 1_780_000_000_000,
            **overrides) -> dict:
    """A consent record permitting services and referral within the country."""
    value = {
        "consentId": f"consent-{n:06d}", "version": 1, "subjectId": f"subj-{n:06d}",
        "givenBy": "Person", "method": "VerbalWithInterpreter", "language": "amh",
        "noticeVersion": "2026-01", "controller": controller,
        "purposes": ["Services", "Referral"], "recipientAgencies": [],
        "recipientRoles": ["NGO", "HealthServiceOrganisation"],
        "dataCategories": ["Identity", "Demographics", "SupportNeeds"],
        "crossBorder": False, "crossBorderCountries": [],
        "validFrom": valid_from, "validUntil": None,
        "events": [{"type": "Given", "at": valid_from, "channel": "InPerson",
                    "recordedBy": controller}],
    }
    value.update(overrides)
    return value


def status(referral_id: str = "00000000-0000-4000-8000-000000000001", state: str = "received",
           set_by: str = "BH/NGO/SHELTER", at: int = 1_790_000_000_500, **overrides) -> dict:
    value = {"referralId": referral_id, "state": state, "reason": None, "detail": None,
             "setBy": set_by, "at": at}
    value.update(overrides)
    return value
