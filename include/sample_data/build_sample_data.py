"""Rebuild the generated files of the Northwind Cloud sample handbook.

The Markdown, HTML, JSON and JSONL documents under ``handbook/`` are committed
as plain files. This script (re)creates the files that are binary or that use a
non-UTF-8 encoding, deterministically, so reruns produce byte-identical output:

* ``.txt`` notes (UTF-8, one Latin-1 file and one UTF-16 file with BOM)
* ``.pdf`` documents (fpdf2, core fonts, fixed creation date)
* ``.docx`` documents (python-docx, fixed core properties and zip timestamps)

Usage::

    .venv/bin/python include/sample_data/build_sample_data.py
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from docx import Document
from fpdf import FPDF

HANDBOOK = Path(__file__).resolve().parent / "handbook"
FIXED_DATE = datetime(2026, 1, 15, tzinfo=UTC)
ZIP_DATE = (2026, 1, 15, 0, 0, 0)
AUTHOR = "Northwind Cloud"


# --------------------------------------------------------------------------- #
# Plain-text documents                                                         #
# --------------------------------------------------------------------------- #

EXPENSE_POLICY = """\
NORTHWIND CLOUD - EXPENSE REIMBURSEMENT POLICY
Owner: Finance (Accounts Payable)
Version 2.3 - effective 1 March 2026

1. SCOPE

This policy covers business expenses that employees pay personally or with a
Northwind Cloud corporate card. Travel-specific rules (flights, hotels, per
diems) are in the Employee Travel Policy; this document covers how expenses
are submitted, approved and paid.

2. SUBMITTING EXPENSES

- All expenses are submitted in Expensify, using the correct category and
  cost center.
- Submit each expense within 30 days of the date it was incurred. Expenses
  submitted more than 90 days late are not reimbursed, except with written
  approval from the Controller.
- An itemized receipt is required for every expense of USD 25 or more
  (or local equivalent). Photos of receipts taken with the Expensify app are
  accepted; you do not need to keep the paper original.
- Credit-card slips without the list of items are not accepted as receipts
  for meals.

3. APPROVALS

- Your direct manager approves expense reports up to USD 5,000.
- Reports above USD 5,000 also need approval from the department's VP.
- Nobody may approve their own expenses, or expenses of someone they report
  to. Expenses of executives are approved by the CFO.

4. CORPORATE CARDS

Employees who spend more than USD 1,000 per month on business expenses are
issued an American Express corporate card. The card must not be used for
personal purchases, even if you intend to pay them back. Card transactions
are imported into Expensify automatically; you still have to attach the
receipt and a business purpose within 30 days.

5. CUSTOMER ENTERTAINMENT

Meals and events with customers or prospects are reimbursed up to USD 150 per
attendee, including tax and tip. List every attendee and their company in the
expense. Alcohol is reimbursed only as part of a customer meal, and never for
internal team events unless the event budget was approved in advance by a VP.

6. NON-REIMBURSABLE EXPENSES

- Traffic and parking fines
- Personal entertainment (movies, minibar, spa)
- Upgrades paid for personal comfort
- Lost or stolen personal items
- Gifts to colleagues (use the team celebration budget instead)

7. PAYMENT

Approved expenses are paid with the next payroll run in the employee's local
currency. Expenses approved by the 20th of the month are included in that
month's payroll. Currency conversion uses the rate on the date of the expense.

Questions: #ask-finance on Slack or ap@northwind.cloud.
"""

PARENTAL_LEAVE_POLICY = """\
Northwind Cloud - Parental Leave Policy
=======================================

Owner: People Operations
Effective: 1 January 2026

Who is eligible
---------------
All full-time and part-time employees who have completed 3 months of service
are eligible, regardless of gender, and whether they become a parent through
birth, adoption, foster placement or surrogacy.

How much leave
--------------
Eligible employees receive 18 weeks of fully paid parental leave. The leave
can be taken in one block or in up to three blocks of at least 2 weeks each,
and must be used within 12 months of the birth or placement.

A birthing parent may also take up to 4 weeks of paid pregnancy leave before
the expected due date. This does not reduce the 18 weeks of parental leave.

Where statutory parental benefits exist (for example in Canada, Portugal and
Germany), Northwind Cloud tops up the government payment to 100% of base
salary for the 18 weeks.

Returning to work
-----------------
After parental leave you may use a phased return: for up to 4 weeks you work
a 60% schedule while receiving full pay. Agree the schedule with your manager
before the leave ends.

Your role, title and salary are protected while you are on leave, and you
remain eligible for the annual merit review. Your equity continues to vest.

Family-forming support
----------------------
Employees can be reimbursed up to USD 10,000 over their employment for
adoption, surrogacy or fertility treatment costs not covered by insurance.
Claims are submitted confidentially to benefits@northwind.cloud.

How to request leave
--------------------
1. Tell your manager and People Operations at least 8 weeks before the
   planned start date, when possible.
2. Submit the leave in Workday under Time Off > Parental Leave.
3. People Operations confirms dates, pay and any statutory claims you need
   to file in your country.

Miscarriage or stillbirth: employees and their partners receive 2 weeks of
paid leave, with no documentation required.
"""

KNOWN_ISSUES = """\
RELAY SUPPORT - KNOWN ISSUES AND WORKAROUNDS
Maintained by Support Tier 2. Last updated: 16 November 2026.

Use this list before escalating a ticket to Engineering. If the customer's
symptom matches an entry, link the Jira issue to the ticket and use the
workaround. Remove entries when the fix has been deployed to all regions.

-------------------------------------------------------------------------
KI-311  HubSpot connector: custom objects missing after HubSpot API change
Status:      Fix in progress, target Relay 4.3.2
Symptom:     Custom objects created after 1 October 2026 do not appear in
             the table list.
Workaround:  Ask the customer to click "Refresh schema" twice; the second
             refresh uses the fallback endpoint and lists the new objects.
Jira:        RLY-8841
-------------------------------------------------------------------------
KI-318  BigQuery destination: "quota exceeded" on tables with > 4,000 columns
Status:      Won't fix (BigQuery limit is 10,000 columns, but the load job
             metadata limit is hit earlier)
Symptom:     Sync fails with error BQ_QUOTA_LOAD_METADATA.
Workaround:  Exclude unused columns or split the table with two pipes using
             column selection.
Jira:        RLY-8902
-------------------------------------------------------------------------
KI-322  Vault Explorer: row diff view slow for JSON columns larger than 1 MB
Status:      Investigating
Symptom:     The "Compare versions" page takes more than 60 seconds or times
             out.
Workaround:  Query the two versions through the Vault SQL endpoint instead.
Jira:        VLT-1207
-------------------------------------------------------------------------
KI-325  Edge E300: amber status LED after firmware 3.8.0 upgrade
Status:      Cosmetic; fix in firmware 3.8.1 (expected early December 2026)
Symptom:     Front LED stays amber although the console shows the appliance
             as healthy.
Workaround:  None needed. Reassure the customer; syncs are not affected.
Jira:        EDGE-633
-------------------------------------------------------------------------
KI-327  SQL Server CDC: pipe stalls after the source database fails over
             in an Always On availability group
Status:      Fix in progress
Symptom:     Pipe status "Running" but 0 rows synced for more than 30 min
             after a failover.
Workaround:  Pause and resume the pipe. Relay then reconnects to the new
             primary replica using the listener name.
Jira:        RLY-8977
-------------------------------------------------------------------------
"""

# Latin-1 (cp1252-compatible) note from the Montreal office.
MONTREAL_NOTES = """\
Bureau de Montréal / Montréal Office - Practical Notes
Maintained by Amélie Bérubé (Workplace Coordinator, Montréal)
Last update: 8 September 2026

Welcome to the Montréal hub! These notes answer the questions newcomers and
visiting colleagues ask in their first week.

ADDRESS AND ACCESS
- We are at 1450 rue Peel, 11e étage (11th floor), Montréal, QC H3A 1S8.
  The building entrance is on rue Peel; the entrance on boulevard de
  Maisonneuve closes at 18:00.
- Building access cards are issued by the security desk in the lobby. Bring
  photo ID and ask for Amélie if your name is not on the list. Visitors must
  be registered in Envoy the day before.
- The office is open 7:00 to 21:00, Monday to Friday. Weekend access needs
  approval from the Workplace Team.

THE CAFÉ
- Our café corner on the 11th floor has an espresso machine, oat and lactose-
  free milk, and fresh pastries from Café Olimpico every Tuesday and
  Thursday morning. The crème brûlée on the last Friday of the month is a
  tradition; please do not skip it.
- Lunch is catered on Wednesdays (the "mercredi lunch"). Dietary
  restrictions go in the #mtl-office channel by Monday noon.

LANGUAGE
Québec's Charter of the French Language applies to our workplace. Internal
signage, the employee handbook summary and job offers for Montréal roles are
available in French. Most meetings are held in English, but nobody will mind
if you practise your français at the café.

HOLIDAYS SPECIFIC TO QUÉBEC
The Montréal office observes the Fête nationale du Québec (24 June) and
Canada Day (1 July), in addition to the company-wide holidays. Journée
nationale des patriotes (the Monday before 25 May) is also a paid holiday.

GETTING HERE
- Métro: Peel station (green line) is a 3-minute walk.
- BIXI bike station right in front of the building; secure bike parking in
  the basement (level P2), ask security for a code.
- In winter, use the underground city (RÉSO) from the Métro to stay dry.

VISITORS FROM OTHER HUBS
Colleagues visiting from Lisbon, Seattle or our partners in Zürich can book
a hot desk in Robin. The two quiet rooms ("Mont-Royal" and "Saint-Laurent")
can be booked for up to 2 hours at a time. Recommended hotels within walking
distance are listed in the Travel Policy booking tool.

RECRUITING
Candidates interviewing on site should send their résumé (CV) to the
recruiter in advance; we do not print résumés at the front desk. Please
greet candidates at the elevator on the 11th floor.

Questions? Write to Amélie Bérubé or post in #mtl-office. À bientôt!
"""

# UTF-16 (with BOM) escalation contact sheet.
ESCALATION_CONTACTS = """\
SUPPORT ESCALATION CONTACTS - Q4 2026
Confidential - internal use only. Valid from 1 October 2026 to 31 December 2026.

WHEN TO ESCALATE
Tier 1 agents escalate to Tier 2 when a ticket is Urgent, when it is not
solved within 4 business hours, or when it involves possible data loss.
Tier 2 escalates to the Engineering on-call through PagerDuty (service
"relay-support-escalation") when the issue needs a code fix, a database
change or access to production infrastructure.

ESCALATION LADDER
Level 1  Tier 2 duty engineer (rotates weekly)
         Slack: @support-t2-duty
Level 2  Support Team Leads
         Americas: Marisol Peña        +1 206 555 0143
         EMEA:     Søren Halvorsen     +351 21 555 0178
         APAC:     Priya Raghunathan   +61 2 5550 1122
Level 3  Director of Global Support: Jonas Weißmann
         +1 206 555 0190 (mobile, 24/7 for Urgent Enterprise tickets only)
Level 4  VP Customer Experience: Adaeze Okafor
         Contact only through the Director of Global Support.

PRODUCT-SPECIFIC CONTACTS
- Relay Edge hardware (RMA, shipping, on-site swaps):
  Edge Logistics desk, edge-rma@northwind.cloud, +1 206 555 0155
- Relay Vault restores larger than 5 TB:
  Vault on-call, Slack @vault-oncall (PagerDuty service "vault-prod")
- Billing disputes above USD 10,000:
  Revenue Operations, revops@northwind.cloud

SECURITY
Any ticket where a customer reports suspicious access, leaked credentials or
a vulnerability goes straight to the Security on-call: page @security-oncall
or call the security hotline +1 206 555 0111. Do not wait for Tier 2.

Tip: the Level 3 mobile number must never be shared with customers.
"""


def write_text_files() -> None:
    files = [
        ("policies/expense_policy.txt", EXPENSE_POLICY, "utf-8"),
        ("policies/parental_leave_policy.txt", PARENTAL_LEAVE_POLICY, "utf-8"),
        ("support/known_issues.txt", KNOWN_ISSUES, "utf-8"),
        ("policies/montreal_office_notes.txt", MONTREAL_NOTES, "latin-1"),
        ("support/escalation_contacts.txt", ESCALATION_CONTACTS, "utf-16"),
    ]
    for rel, text, encoding in files:
        path = HANDBOOK / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding=encoding, newline="\n") as f:
            f.write(text)


# --------------------------------------------------------------------------- #
# PDF documents                                                                #
# --------------------------------------------------------------------------- #
# Each document: title, subject, and a list of pages. Each page has a heading
# (printed at the top of the page) and a list of (subheading, paragraphs).
# A paragraph starting with "- " is rendered as a bullet.

PDF_DOCS = {
    "policies/information_security_policy.pdf": {
        "title": "Information Security Policy",
        "subject": "Northwind Cloud information security requirements for all staff",
        "keywords": "security, passwords, MFA, devices, data classification",
        "pages": [
            (
                "1. Purpose, Scope and Data Classification",
                [
                    (
                        "Purpose",
                        [
                            "This policy sets the minimum security requirements for everyone who works for or with "
                            "Northwind Cloud: employees, contractors and interns. It supports our ISO/IEC 27001 "
                            "certification and our SOC 2 commitments to customers. Version 5.0, approved by the "
                            "Chief Information Security Officer (CISO), Dana Whitfield, on 9 February 2026.",
                        ],
                    ),
                    (
                        "Data classification",
                        [
                            "All information is classified into one of four levels. The owner of a document or "
                            "system is responsible for choosing the level.",
                            "- Public: approved for publication, such as the website and public docs.",
                            "- Internal: default level for company information, such as this handbook.",
                            "- Confidential: contracts, financial data, employee records, security reports.",
                            "- Restricted: customer data, credentials, encryption keys. Access is granted per "
                            "person, logged, and reviewed.",
                            "Restricted data must never be copied to a laptop, pasted into Slack, or entered into "
                            "an external AI tool that is not on the approved tools list.",
                        ],
                    ),
                    (
                        "Security training",
                        [
                            "Every new employee completes the security awareness course within 14 days of their "
                            "start date, and everyone repeats it every year in May. The Security team runs a "
                            "phishing simulation every month; people who click a simulated phishing link twice in "
                            "a quarter take a 20-minute refresher module.",
                        ],
                    ),
                ],
            ),
            (
                "2. Accounts, Passwords and Devices",
                [
                    (
                        "Passwords and multi-factor authentication",
                        [
                            "- Passwords must be at least 14 characters long and unique for each system. Use the "
                            "company password manager (1Password) to generate and store them.",
                            "- Multi-factor authentication is mandatory for all company accounts. For Google "
                            "Workspace, Okta, GitHub and AWS, the second factor must be the hardware security key "
                            "(YubiKey 5) shipped by IT together with your laptop. SMS codes are not allowed.",
                            "- Passwords are not rotated on a schedule, but must be changed immediately if there is "
                            "any suspicion that they were exposed.",
                            "- Never share accounts. Shared service accounts are owned by a team and stored in a "
                            "shared 1Password vault.",
                        ],
                    ),
                    (
                        "Laptops and mobile devices",
                        [
                            "- Only company-managed laptops (enrolled in Kandji for macOS or Intune for Windows) "
                            "may access customer data or production systems.",
                            "- Full-disk encryption (FileVault or BitLocker) must be enabled; IT checks this "
                            "automatically every day.",
                            "- Screens must lock automatically after 5 minutes of inactivity.",
                            "- Operating system security updates must be installed within 14 days of release; "
                            "devices that fall behind lose access to Okta applications until they are updated.",
                            "- Personal phones may be used for Slack and email only after enrolling them in the "
                            "mobile device management profile, which can wipe company data remotely.",
                            "- Report a lost or stolen device to it-help@northwind.cloud and to the Security "
                            "on-call within 1 hour.",
                        ],
                    ),
                ],
            ),
            (
                "3. Access Control and Production Systems",
                [
                    (
                        "Least privilege",
                        [
                            "Access is granted based on role and only for as long as it is needed. Managers "
                            "request access for their team members in the Access Request portal; the system "
                            "owner approves it. Access rights to Confidential and Restricted systems are reviewed "
                            "every quarter by the system owner, and unused access is removed.",
                        ],
                    ),
                    (
                        "Production access",
                        [
                            "Nobody has standing access to production infrastructure. Engineers request "
                            "just-in-time access through Teleport, with a reason and a linked ticket. Access is "
                            "granted for a maximum of 8 hours and every session is recorded. Access to customer "
                            "row data additionally requires approval from a second engineer and an active support "
                            "access session granted by the customer.",
                        ],
                    ),
                    (
                        "Encryption keys and secrets",
                        [
                            "Secrets are stored only in HashiCorp Vault or AWS Secrets Manager, never in code "
                            "repositories. Pre-commit hooks and GitHub secret scanning block commits that contain "
                            "credentials. Customer data encryption keys in AWS KMS are rotated automatically every "
                            "365 days. TLS certificates are issued by an automated ACME process and renewed 30 "
                            "days before expiry.",
                        ],
                    ),
                    (
                        "Leavers",
                        [
                            "When someone leaves the company, IT disables all accounts within 4 hours of the end of "
                            "their last working day. Hardware must be returned within 10 working days; prepaid "
                            "shipping boxes are sent to remote employees.",
                        ],
                    ),
                ],
            ),
            (
                "4. Reporting Incidents and Exceptions",
                [
                    (
                        "Reporting a security incident",
                        [
                            "Report any suspected security incident (phishing you clicked, a lost laptop, data "
                            "sent to the wrong person, unexpected access in a log) immediately to "
                            "security@northwind.cloud or in the #security-help Slack channel. You will never be "
                            "blamed for reporting in good faith; hiding an incident is a violation of this policy.",
                        ],
                    ),
                    (
                        "Exceptions",
                        [
                            "Exceptions to this policy must be requested in the Security Exceptions register, "
                            "approved by the CISO, and are valid for at most 6 months. Each exception lists the "
                            "compensating controls that reduce the risk.",
                        ],
                    ),
                    (
                        "Enforcement",
                        [
                            "Violations of this policy may result in disciplinary action, up to termination of "
                            "employment or contract. Systems that do not comply may be disconnected from the "
                            "network without notice. This policy is reviewed at least once a year by the "
                            "Security team; the next review is planned for February 2027.",
                        ],
                    ),
                ],
            ),
        ],
    },
    "policies/employee_travel_policy.pdf": {
        "title": "Employee Travel Policy",
        "subject": "Booking, class of travel, hotels and per diems for business travel",
        "keywords": "travel, flights, hotels, per diem, Navan",
        "pages": [
            (
                "1. Booking Business Travel",
                [
                    (
                        "Scope",
                        [
                            "This policy applies to all business travel paid by Northwind Cloud, including customer "
                            "visits, team gatherings, conferences and the annual company summit. Effective "
                            "1 April 2026. Owner: Finance, Travel Program.",
                        ],
                    ),
                    (
                        "How to book",
                        [
                            "- All flights, hotels and rental cars are booked in Navan, our travel booking tool. "
                            "Bookings made elsewhere are reimbursed only if they are cheaper than the Navan price "
                            "shown on the same day.",
                            "- Book flights at least 14 days before departure. Last-minute bookings (less than "
                            "7 days) need manager approval in Navan, unless they are for an urgent customer "
                            "escalation.",
                            "- International trips also need approval from your department's VP before booking.",
                            "- Travel to countries on the Security team's high-risk list needs approval from the "
                            "CISO.",
                        ],
                    ),
                    (
                        "Travel insurance and safety",
                        [
                            "All employees on business travel are covered by the company's travel insurance, "
                            "including medical emergencies and evacuation. The insurance card and 24/7 assistance "
                            "number are in the Navan app. Navan also tracks your itinerary so the company can "
                            "contact you during an emergency.",
                        ],
                    ),
                ],
            ),
            (
                "2. Flights, Trains and Ground Transport",
                [
                    (
                        "Class of travel",
                        [
                            "- Flights with a scheduled duration under 6 hours: economy class.",
                            "- Flights of 6 hours or more: premium economy.",
                            "- Overnight flights longer than 10 hours: business class may be booked with VP "
                            "approval, if the traveller has a customer meeting within 12 hours of arrival.",
                            "- Trains are preferred over flights when the rail journey is 4 hours or less, for "
                            "example Lisbon to Porto or Seattle to Portland. First class on trains is allowed "
                            "when the price difference is less than 20%.",
                            "Loyalty miles and points earned on business trips may be kept by the traveller, but "
                            "must never influence the choice of airline or hotel.",
                        ],
                    ),
                    (
                        "Ground transport",
                        [
                            "- Use public transport, taxis or ride-hailing services for trips to and from airports "
                            "and meetings.",
                            "- Rental cars are limited to intermediate (mid-size) class, with the rental company's "
                            "collision damage waiver included in the Navan rate.",
                            "- Using your personal car for business trips is reimbursed at USD 0.70 per mile in the "
                            "US, CAD 0.70 per km in Canada and EUR 0.40 per km in the EU. Commuting to your usual "
                            "office is not reimbursed.",
                        ],
                    ),
                ],
            ),
            (
                "3. Hotels and Meals",
                [
                    (
                        "Hotel nightly rate limits",
                        [
                            "Hotels must be booked at or below the following nightly rates, excluding taxes:",
                            "- New York City: USD 350",
                            "- San Francisco and Seattle: USD 300",
                            "- London: GBP 260",
                            "- Lisbon and Montreal: EUR 180 / CAD 260",
                            "- Any other city: USD 220",
                            "During major conferences, Navan may show a higher local cap that applies automatically. "
                            "Airbnb and other short-term rentals are allowed for stays of 5 nights or longer.",
                        ],
                    ),
                    (
                        "Meals and per diem",
                        [
                            "Travellers receive a meal per diem instead of submitting individual meal receipts: "
                            "USD 75 per full travel day in the US and Canada, and EUR 65 per full travel day in "
                            "Europe. On the departure and return days, 75% of the per diem applies. If a meal is "
                            "provided by a conference, customer or the company, the per diem is reduced by 25% for "
                            "breakfast and 35% each for lunch and dinner.",
                        ],
                    ),
                ],
            ),
            (
                "4. Expenses After the Trip",
                [
                    (
                        "Submitting travel expenses",
                        [
                            "Travel expenses are submitted and approved according to the Expense Reimbursement "
                            "Policy. Add the Navan trip ID to each expense so Finance can match it to the booking.",
                        ],
                    ),
                    (
                        "Combining business and personal travel",
                        [
                            'You may extend a business trip for personal reasons ("bleisure") if the flight cost '
                            "does not increase by more than USD 150. Hotel nights and meals during the personal "
                            "days are paid by the traveller, and the extra days must be recorded as PTO.",
                        ],
                    ),
                    (
                        "Cancellations",
                        [
                            "If a trip is cancelled, cancel the bookings in Navan as soon as possible. Unused "
                            "non-refundable tickets stay as credits in Navan and must be used for the next "
                            "business trip with the same airline.",
                        ],
                    ),
                ],
            ),
        ],
    },
    "product/relay_admin_guide.pdf": {
        "title": "Relay Admin Guide",
        "subject": "Administering a Relay workspace: roles, networking, alerts and audit logs",
        "keywords": "Relay, admin, workspace, roles, audit log, alerts",
        "pages": [
            (
                "1. Workspaces and Roles",
                [
                    (
                        "About this guide",
                        [
                            "This guide is for workspace administrators of Relay 4.x. It explains how to manage "
                            "users, network settings, alerting, data plane selection and the audit log. Edition "
                            "of 10 August 2026.",
                        ],
                    ),
                    (
                        "Workspace structure",
                        [
                            "A Relay organisation can contain up to 20 workspaces (more on request for Enterprise). "
                            "Each workspace has its own region, data plane, pipes, members and billing usage. "
                            "Typical setups are one workspace per environment (production, staging) or per "
                            "business unit.",
                        ],
                    ),
                    (
                        "Built-in roles",
                        [
                            "- Admin: full control, including members, billing, network settings and deletion of "
                            "the workspace. Every workspace must have at least two Admins.",
                            "- Editor: creates, edits, pauses and deletes pipes and projects; cannot manage members.",
                            "- Viewer: read-only access to pipes, health pages and logs.",
                            "- Billing: access to invoices and usage only.",
                            "Roles are assigned per workspace. A person can be Admin in the staging workspace and "
                            "Viewer in production.",
                        ],
                    ),
                ],
            ),
            (
                "2. Network and Data Plane Settings",
                [
                    (
                        "Restricting console access by IP",
                        [
                            "Admins can restrict console and API access to a list of IP ranges under Settings > "
                            "Security > IP allow list. Up to 50 CIDR ranges are supported. Before saving, the "
                            "console checks that your current IP is in the list to prevent locking yourself out.",
                        ],
                    ),
                    (
                        "Choosing a data plane",
                        [
                            "Each pipe runs either on the cloud data plane or on a Relay Edge appliance. The "
                            "default for new pipes is set under Settings > Data plane. Moving an existing pipe to "
                            "another data plane pauses it, moves the sync state and resumes it; no re-sync is "
                            "needed.",
                        ],
                    ),
                    (
                        "SSH tunnels",
                        [
                            "For sources behind a bastion host, Relay can connect through an SSH tunnel. Relay "
                            "generates an Ed25519 key pair per workspace; add the public key shown in the console "
                            "to the authorized_keys file of the tunnel user.",
                        ],
                    ),
                ],
            ),
            (
                "3. Alerts and Notifications",
                [
                    (
                        "Alert rules",
                        [
                            "Alert rules are defined per project and apply to all of its pipes. Available "
                            "conditions: sync failed, sync delayed (latency above a threshold you choose), "
                            "schema changed, rows rejected, and usage above a percentage of the plan.",
                            "- A sync-delayed alert fires only after the condition holds for 3 consecutive checks "
                            "(checks run every 5 minutes), to avoid noise.",
                            "- Alerts are grouped: if 10 pipes fail within 5 minutes, one message lists all of them.",
                            "- Each alert rule can be muted for 1, 4 or 24 hours from the notification itself.",
                        ],
                    ),
                    (
                        "Notification channels",
                        [
                            "Configure channels under Settings > Notifications. Email and Slack are available on "
                            "all plans; PagerDuty, Microsoft Teams and webhooks require the Business plan or "
                            "higher. Test every channel with the Send test button after creating it.",
                        ],
                    ),
                ],
            ),
            (
                "4. Audit Log and Workspace Deletion",
                [
                    (
                        "Audit log",
                        [
                            "The audit log records every change made in the console or through the API: logins, "
                            "member and role changes, pipe configuration changes, credential updates, support "
                            "access sessions and exports. Each entry includes the actor, IP address, user agent "
                            "and a before/after view of the change. Audit log entries are kept for 400 days and "
                            "can be exported as CSV or JSON from Settings > Audit log.",
                        ],
                    ),
                    (
                        "Deleting a workspace",
                        [
                            "Only Admins can delete a workspace, and the deletion must be confirmed by a second "
                            "Admin within 24 hours. After confirmation, the workspace is disabled immediately and "
                            "permanently deleted after a 14-day grace period, during which Support can restore "
                            "it. Data already written to destinations is not touched; Relay Vault snapshots follow "
                            "their own retention rules.",
                        ],
                    ),
                ],
            ),
        ],
    },
    "support/customer_support_sla.pdf": {
        "title": "Customer Support and Service Level Agreement",
        "subject": "Support response times, availability commitment and service credits",
        "keywords": "SLA, support, response time, uptime, service credits",
        "pages": [
            (
                "1. Support Plans and Channels",
                [
                    (
                        "Overview",
                        [
                            "This document describes the support and availability commitments that Northwind "
                            "Cloud makes to Relay, Relay Edge and Relay Vault customers. It is an exhibit to the "
                            "Master Subscription Agreement, version of 1 May 2026.",
                        ],
                    ),
                    (
                        "Support plans",
                        [
                            "- Standard support (included with Starter): help center, email and web tickets, "
                            "business hours 08:00-18:00 in the customer's region, Monday to Friday.",
                            "- Priority support (included with Business): adds 24/7 coverage for Urgent tickets "
                            "and live chat during business hours.",
                            "- Premier support (included with Enterprise): adds 24/7 phone support, a named "
                            "Technical Account Manager and quarterly service reviews.",
                        ],
                    ),
                    (
                        "Ticket priorities",
                        [
                            "- Urgent (P1): production sync completely stopped or data loss, no workaround.",
                            "- High (P2): production seriously degraded or a key feature unusable.",
                            "- Normal (P3): non-critical issue or a workaround exists.",
                            "- Low (P4): questions, documentation, feature requests.",
                        ],
                    ),
                ],
            ),
            (
                "2. Response Time Targets",
                [
                    (
                        "Initial response times",
                        [
                            "The initial response time is the time between ticket creation and the first reply "
                            "by a support engineer (not an automated message).",
                            "- Premier: P1 within 30 minutes (24/7), P2 within 2 hours, P3 within 8 business "
                            "hours, P4 within 2 business days.",
                            "- Priority: P1 within 1 hour (24/7), P2 within 4 business hours, P3 within 1 "
                            "business day, P4 within 3 business days.",
                            "- Standard: P1 within 4 business hours, P2 within 1 business day, P3 and P4 within "
                            "2 business days.",
                        ],
                    ),
                    (
                        "Updates during an Urgent ticket",
                        [
                            "For P1 tickets on Premier support, Northwind Cloud provides an update at least every "
                            "60 minutes until a workaround or fix is in place. On Priority support, updates are "
                            "provided at least every 4 hours.",
                        ],
                    ),
                ],
            ),
            (
                "3. Availability Commitment and Service Credits",
                [
                    (
                        "Monthly uptime commitment",
                        [
                            "Northwind Cloud commits to a monthly uptime of the Relay control plane and cloud data "
                            "plane of 99.9% for Business workspaces and 99.95% for Enterprise workspaces. Starter "
                            "workspaces have no uptime commitment. Scheduled maintenance announced at least 5 "
                            "days in advance, limited to 4 hours per month, is excluded.",
                        ],
                    ),
                    (
                        "Service credits",
                        [
                            "If the monthly uptime falls below the commitment, the customer can claim a credit on "
                            "the monthly subscription fee of the affected workspace:",
                            "- below the commitment but at least 99.0%: 10% credit",
                            "- below 99.0% but at least 95.0%: 25% credit",
                            "- below 95.0%: 50% credit",
                            "Credits must be requested within 30 days after the end of the affected month and are "
                            "applied to the next invoice. They are the customer's sole remedy for unavailability.",
                        ],
                    ),
                ],
            ),
        ],
    },
}


class HandbookPDF(FPDF):
    """FPDF with a running header (document title) and a page-number footer."""

    def __init__(self, doc_title: str) -> None:
        super().__init__(format="A4")
        self.doc_title = doc_title
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(20, 18, 20)

    def header(self) -> None:
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 5, f"Northwind Cloud - {self.doc_title}", align="R", new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)
        self.ln(3)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font("Helvetica", "", 8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 6, f"Internal - Page {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def _check_latin1(text: str, where: str) -> None:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError as exc:  # pragma: no cover - guard for editors
        raise ValueError(f"non latin-1 character in {where}: {text!r}") from exc


def build_pdf(rel: str, spec: dict) -> None:
    title = spec["title"]
    pdf = HandbookPDF(title)
    pdf.set_title(title)
    pdf.set_author(AUTHOR)
    pdf.set_subject(spec["subject"])
    pdf.set_keywords(spec["keywords"])
    pdf.set_creator("feedstock include/sample_data/build_sample_data.py")
    pdf.set_lang("en-US")
    pdf.set_creation_date(FIXED_DATE)
    width = pdf.epw

    for page_index, (page_heading, sections) in enumerate(spec["pages"]):
        pdf.add_page()
        if page_index == 0:
            pdf.set_font("Helvetica", "B", 20)
            _check_latin1(title, rel)
            pdf.multi_cell(width, 10, title, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        # Heading at the top of every page.
        _check_latin1(page_heading, rel)
        pdf.set_font("Helvetica", "B", 15)
        pdf.multi_cell(width, 8, page_heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        for subheading, paragraphs in sections:
            _check_latin1(subheading, rel)
            pdf.set_font("Helvetica", "B", 12)
            pdf.multi_cell(width, 7, subheading, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", "", 10.5)
            for para in paragraphs:
                _check_latin1(para, rel)
                if para.startswith("- "):
                    pdf.set_x(pdf.l_margin + 4)
                    pdf.multi_cell(width - 4, 5.5, "- " + para[2:], new_x="LMARGIN", new_y="NEXT")
                else:
                    pdf.multi_cell(width, 5.5, para, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1.5)
            pdf.ln(2)

    out = HANDBOOK / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))


# --------------------------------------------------------------------------- #
# DOCX documents                                                               #
# --------------------------------------------------------------------------- #
# Each document: title, subject, and a list of (Heading 2, paragraphs).
# A paragraph starting with "- " becomes a "List Bullet" paragraph,
# one starting with "1. " style numbering becomes "List Number".

DOCX_DOCS = {
    "policies/performance_review_process.docx": {
        "title": "Performance Review Process",
        "subject": "How performance reviews, calibration and merit increases work",
        "sections": [
            (
                "Overview",
                [
                    "Northwind Cloud runs two review cycles every year. The mid-year check-in in June is a "
                    "lightweight conversation focused on goals and growth, with no rating. The annual review "
                    "in November and December produces a performance rating, which drives merit increases, "
                    "bonuses and promotions. This document describes the 2026 cycle.",
                ],
            ),
            (
                "2026 timeline",
                [
                    "- 2 November 2026: self-reviews and peer-review requests open in Lattice.",
                    "- 16 November 2026: deadline for self-reviews; each employee nominates 3 to 5 peer reviewers.",
                    "- 30 November 2026: deadline for peer and manager reviews.",
                    "- 1-11 December 2026: calibration sessions per department.",
                    "- 14-18 December 2026: managers share results in 1:1 conversations.",
                    "- 1 March 2027: merit increases and promotions take effect in payroll.",
                    "Employees who joined after 1 September 2026 take part in the next cycle; their manager "
                    "holds an informal 90-day check-in instead.",
                ],
            ),
            (
                "Rating scale",
                [
                    "Managers choose one of five ratings, based on results against goals and on how the work "
                    "was done (our values: Customer Obsession, Own It, Write It Down, Keep It Simple):",
                    "- 5 - Exceptional impact: far beyond the expectations of the level.",
                    "- 4 - Exceeds expectations.",
                    "- 3 - Fully meets expectations: solid, reliable performance. Most people land here.",
                    "- 2 - Partially meets expectations: specific areas need improvement.",
                    "- 1 - Does not meet expectations: a performance improvement plan (PIP) is started.",
                    "We do not use forced distribution, but calibration checks that ratings of 5 stay rare "
                    "(historically about 5% of employees).",
                ],
            ),
            (
                "Calibration",
                [
                    "In calibration, managers of a department review ratings together, guided by an HR "
                    "Business Partner, to make sure the same standards are applied across teams. Managers "
                    "must bring written evidence (examples of work, peer feedback) for every rating of 1, 2, "
                    "4 or 5. Ratings are final only after calibration.",
                ],
            ),
            (
                "Promotions",
                [
                    "Promotions are decided once a year, during calibration. A manager nominates an employee "
                    "with a one-page promotion case showing that the person has already been working at the "
                    "next level for at least 6 months. Promotions to Staff Engineer, Principal Engineer and "
                    "Director are additionally reviewed by a cross-department promotion committee.",
                ],
            ),
            (
                "Merit increases and bonuses",
                [
                    "The merit budget is set by the leadership team each year and is shared with managers in "
                    "December. Merit increases depend on the rating and on the employee's position in the "
                    "salary band. Employees on the annual bonus plan receive their bonus with the March "
                    "payroll; the company performance multiplier is announced in February.",
                ],
            ),
            (
                "Disagreeing with a review",
                [
                    "If you disagree with your rating, first discuss it with your manager. If you still "
                    "disagree, you can ask your HR Business Partner for a review within 15 working days of "
                    "receiving your results. The HR Business Partner and your manager's manager review the "
                    "case and reply in writing within 10 working days.",
                ],
            ),
        ],
    },
    "policies/new_hire_onboarding.docx": {
        "title": "New Hire Onboarding Guide",
        "subject": "What to expect in your first weeks at Northwind Cloud",
        "sections": [
            (
                "Welcome",
                [
                    "Welcome to Northwind Cloud! This guide explains what happens before your first day and "
                    "during your first 90 days. Your manager, your onboarding buddy and the People Operations "
                    "team are there to help you; nobody expects you to know everything in your first month.",
                ],
            ),
            (
                "Before your first day",
                [
                    "- About 10 days before your start date, IT ships your laptop, YubiKey and welcome kit "
                    "(hoodie, notebook, water bottle and a Relay Edge E100 model in miniature) to your home "
                    "address or hub.",
                    "- You receive an email to activate your Okta account. Activate it from your personal "
                    "device on the Friday before you start; the link is valid for 72 hours.",
                    "- Your manager assigns an onboarding buddy from another team and shares your 30-60-90 "
                    "day plan in Notion.",
                ],
            ),
            (
                "Your first week",
                [
                    "Every new hire starts on a Monday. The first week follows the same structure:",
                    "1. Monday: company orientation at 16:00 UTC with the CEO, Hannah Lindqvist, and People "
                    "Operations; laptop setup with IT at 17:30 UTC.",
                    "2. Tuesday: product demo of Relay, Relay Edge and Relay Vault by the Solutions team; "
                    "first 1:1 with your manager.",
                    '3. Wednesday: "Northwind 101" session on our customers, competitors and business model.',
                    "4. Thursday: team introductions and access requests for the systems your role needs.",
                    "5. Friday: first coffee chat with your buddy and a short feedback survey about the week.",
                ],
            ),
            (
                "Your first 90 days",
                [
                    "- Day 30: check-in with your manager to review the 30-day goals and adjust the plan.",
                    "- Day 60: you should be contributing independently to your team's work; engineers "
                    "typically ship their first change to production in their first two weeks.",
                    "- Day 90: the probation period ends with a written review by your manager. In countries "
                    "where local law sets a different probation period, the local contract applies.",
                ],
            ),
            (
                "Role-specific onboarding",
                [
                    "Engineers complete the on-call shadowing program: two weeks shadowing the primary "
                    "on-call engineer before joining the rotation, which usually happens in the third month. "
                    "Support agents spend their first three weeks in the Support Academy, ending with a "
                    "certification quiz. Sales hires attend the 5-day Sales Bootcamp, held in Seattle every "
                    "other month.",
                ],
            ),
            (
                "Who to ask",
                [
                    "People Operations: #ask-people. IT problems: #it-help or it-help@northwind.cloud. "
                    "Finance and expenses: #ask-finance. For anything else, ask your buddy first.",
                ],
            ),
        ],
    },
    "product/relay_edge_installation_guide.docx": {
        "title": "Relay Edge Installation Guide",
        "subject": "Racking, cabling and activating a Relay Edge E100 or E300 appliance",
        "sections": [
            (
                "Before you begin",
                [
                    "This guide covers the physical installation and activation of Relay Edge E100 and E300 "
                    "hardware appliances. For Edge Virtual, follow the deployment steps in the console "
                    "instead. Allow about 45 minutes for a single appliance.",
                    "You need: a rack position (1U for E100, 2U for E300), two power outlets on separate "
                    "circuits for the E300, one network port on a network that can reach your sources, a "
                    "laptop with an Ethernet port, and a Relay Admin account.",
                ],
            ),
            (
                "What is in the box",
                [
                    "- The appliance with rail kit and front bezel.",
                    "- Power cords (2 for the E300), region-specific.",
                    "- A printed activation card with the appliance serial number.",
                    "- A USB-C to RJ45 console adapter.",
                    "Keep the packaging for 30 days in case an exchange is needed.",
                ],
            ),
            (
                "Racking and cabling",
                [
                    "1. Mount the rails and slide in the appliance. The E300 weighs 21 kg; use two people.",
                    "2. Connect port NET1 to the production network. NET2 is reserved for the high-availability "
                    "heartbeat link when two appliances are paired; connect the two appliances directly with "
                    "a Cat6 cable.",
                    "3. Connect the power cords. On the E300, connect each power supply to a different "
                    "circuit.",
                    "4. Press the power button. The first boot takes about 4 minutes; the status LED turns "
                    "solid green when the appliance is ready.",
                ],
            ),
            (
                "Initial network configuration",
                [
                    "By default the appliance requests an address with DHCP on NET1. To configure a static "
                    "address, connect your laptop to the MGMT port, browse to https://192.168.70.1 and log in "
                    "with the serial number printed on the activation card as the one-time password. Set the "
                    "IP address, gateway, DNS servers, NTP servers and, if needed, the HTTP proxy. The MGMT "
                    "port is disabled automatically after activation.",
                ],
            ),
            (
                "Activating the appliance",
                [
                    "1. In the Relay console, go to Settings > Edge > Add appliance and choose the model.",
                    "2. The console shows an activation code of 12 characters. It is valid for 48 hours.",
                    "3. Enter the code on the appliance's local setup page. The appliance registers with the "
                    "control plane, receives its device certificate and downloads the current firmware.",
                    "4. When the appliance shows as Online in the console, assign pipes to it or set it as "
                    "the workspace's default data plane.",
                ],
            ),
            (
                "Troubleshooting",
                [
                    "- Status LED blinking red: the appliance cannot reach the control plane. Check the "
                    "firewall rules and the proxy settings.",
                    "- Activation fails with 'clock skew': the appliance time differs by more than 5 minutes "
                    "from the control plane. Check the NTP servers.",
                    "- The appliance does not power on: check both power supplies; the E300 needs at least "
                    "one working supply to boot.",
                    "If the problem persists, open a ticket with the category technical and the product "
                    "Relay Edge, and include the appliance serial number.",
                ],
            ),
        ],
    },
    "support/data_deletion_requests.docx": {
        "title": "Handling Data Deletion and Privacy Requests",
        "subject": "Procedure for GDPR and CCPA data subject requests received by Support",
        "sections": [
            (
                "Purpose",
                [
                    "Individuals can ask Northwind Cloud to access, correct or delete the personal data we "
                    "hold about them. These are called data subject requests (DSRs). This procedure explains "
                    "how Support and the Privacy team handle DSRs about data that Northwind Cloud controls, "
                    "such as user accounts, support tickets and billing contacts. Owner: Privacy Office "
                    "(privacy@northwind.cloud). Version 2.0, 3 March 2026.",
                ],
            ),
            (
                "Our data versus our customers' data",
                [
                    "Northwind Cloud is a processor for the rows that customers sync through Relay or store "
                    "in Relay Vault. We do not decide what happens to that data. If an individual asks us to "
                    "delete data that belongs to one of our customers' datasets, we do not delete it "
                    "ourselves: we forward the request to the customer within 5 business days and tell the "
                    "individual that we have done so.",
                ],
            ),
            (
                "Deadlines",
                [
                    "- GDPR (EU, UK) requests must be completed within one month of receipt. This can be "
                    "extended by two further months for complex requests, but the requester must be told "
                    "about the extension within the first month.",
                    "- CCPA/CPRA (California) requests must be completed within 45 calendar days, extendable "
                    "once by another 45 days with notice.",
                    "- Quebec Law 25 requests must be answered within 30 days.",
                    "To be safe, the Privacy team's internal target is to complete every request within "
                    "21 calendar days, whatever the jurisdiction.",
                ],
            ),
            (
                "Step-by-step procedure",
                [
                    "1. When a ticket contains a privacy request, set the ticket category to security, add "
                    "the tag dsr, and reply with the 'DSR acknowledgement' macro. Do not ask for more "
                    "personal data than needed.",
                    "2. Create an issue in the Jira project PRIV with the request type (access, correction, "
                    "deletion), the jurisdiction and the date received.",
                    "3. Verify the requester's identity: for account holders, the request must come from "
                    "the email address on the account, or be confirmed through a link sent to it.",
                    "4. The Privacy team runs the deletion workflow, which removes or anonymises the person's "
                    "data in the console database, Zendesk, HubSpot, Stripe and the data warehouse.",
                    "5. The Privacy team confirms completion to the requester in writing and closes the "
                    "Jira issue. Support marks the ticket as solved.",
                ],
            ),
            (
                "Exceptions to deletion",
                [
                    "Some data must be kept even after a deletion request: invoices and payment records "
                    "(kept for 7 years for tax reasons), audit log entries needed for security "
                    "investigations, and data under a legal hold. In those cases the data is restricted, "
                    "not deleted, and the requester is told which categories were kept and why.",
                ],
            ),
            (
                "Records",
                [
                    "The PRIV Jira project is the register of all requests. It is reviewed by the Data "
                    "Protection Officer every quarter and used as evidence in our ISO 27001 and SOC 2 audits.",
                ],
            ),
        ],
    },
}


def _normalize_zip(data: bytes) -> bytes:
    """Rewrite a zip archive with fixed timestamps and attributes for reproducibility."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            info = zipfile.ZipInfo(item.filename, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0
            info.external_attr = 0
            dst.writestr(info, src.read(item.filename))
    return out.getvalue()


def build_docx(rel: str, spec: dict) -> None:
    doc = Document()
    props = doc.core_properties
    props.title = spec["title"]
    props.subject = spec["subject"]
    props.author = AUTHOR
    props.last_modified_by = AUTHOR
    props.category = rel.split("/")[0]
    props.comments = "Generated by include/sample_data/build_sample_data.py"
    props.revision = 1
    naive = FIXED_DATE.replace(tzinfo=None)
    props.created = naive
    props.modified = naive
    props.last_printed = naive

    doc.add_heading(spec["title"], level=1)
    for heading, paragraphs in spec["sections"]:
        doc.add_heading(heading, level=2)
        for para in paragraphs:
            if para.startswith("- "):
                doc.add_paragraph(para[2:], style="List Bullet")
            elif len(para) > 3 and para[0].isdigit() and para[1:3] == ". ":
                doc.add_paragraph(para[3:], style="List Number")
            else:
                doc.add_paragraph(para)

    buf = io.BytesIO()
    doc.save(buf)
    out = HANDBOOK / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_normalize_zip(buf.getvalue()))


def main() -> None:
    write_text_files()
    for rel, spec in PDF_DOCS.items():
        build_pdf(rel, spec)
    for rel, spec in DOCX_DOCS.items():
        build_docx(rel, spec)
    print(f"Sample handbook files written under {HANDBOOK}")


if __name__ == "__main__":
    main()
