"""The web page's words in English and Arabic (right to left), chosen per user.

``Text(lang)`` is what templates call ``_``: ``_("nav.inbox")``, ``_("send.sent", id=rid)``,
``_.enum("Urgency", "Urgent")``, ``_.field("person.firstName")``. A key missing in Arabic
falls back to English; an enum symbol nobody translated is shown split into words. Strings are
plain text: the templates escape them like any other value.
"""
from __future__ import annotations

import re

LANGUAGES = {"en": "English", "ar": "العربية"}
RTL = frozenset({"ar"})

EN = {
    "app.name": "Referral mesh",
    "skip": "Skip to the main content",
    "nav.inbox": "Inbox", "nav.send": "Send a referral", "nav.outbox": "Sent referrals",
    "nav.consents": "Consent", "nav.erasures": "Erasure notices", "nav.signout": "Sign out",
    "nav.main": "Main", "nav.signed_in_as": "Signed in as {user}",
    "lang.label": "Language", "lang.apply": "Change language",
    "foot.zone": "Times are shown in {zone}.",
    "required": "required", "optional": "optional",
    "signin.title": "Sign in",
    "signin.intro": "Case workers of {agency} sign in with the account their IT team made "
                    "for them.",
    "signin.username": "Username", "signin.password": "Password", "signin.submit": "Sign in",
    "signin.wrong": "The username or the password is not right. Check both and try again.",
    "signin.locked": "Too many wrong passwords: this account is paused for a few minutes. If "
                     "you forgot the password, ask your IT team to reset it.",
    "signin.expired": "Your session has ended (unused for a while, or the password was "
                      "reset). Please sign in again; nothing you had saved is lost.",
    "signin.signed_out": "You are signed out.",
    "csrf.title": "This form has expired",
    "csrf.body": "The form was open too long, or it did not come from this gateway's page. "
                 "Nothing was saved. Go back, reload the page and try again.",
    "error.title": "Something went wrong",
    "error.body": "The gateway could not do this just now; nothing was changed. Try again in "
                  "a moment, and tell your IT team if it keeps happening.",
    "notfound.title": "Not found",
    "notfound.body": "There is no such referral or consent at this gateway (it may have been "
                     "erased after the person withdrew consent).",
    "form.errors": "Some fields need attention: see the message next to each of them.",
    "form.list_hint": "separate several with commas",
    "col.received": "Received", "col.sent": "Sent", "col.from": "From", "col.to": "To",
    "col.status": "Status", "col.urgency": "Urgency", "col.stage": "TRM stage",
    "col.due": "Due", "col.referral": "Referral", "col.purpose": "Purpose",
    "col.updated": "Last change",
    "inbox.title": "Referrals received",
    "inbox.intro": "Newest first. Open a referral to see what your agency received and to "
                   "answer it.",
    "inbox.empty": "No referral has been received yet.",
    "open": "Open", "none": "none",
    "detail.title": "Referral",
    "detail.from": "From {agency}", "detail.to": "To {agency}",
    "detail.received_note": "This is exactly what your agency received. {n} other fields "
                            "were withheld by the policy of {domain}, or were empty at the "
                            "sender.",
    "detail.sent_note": "This is the referral as your agency sent it. The policy domain "
                        "forwards only what its policy allows for the recipient.",
    "detail.not_received": "Fields not received",
    "detail.pseudonym": "a pseudonym: the same for the same person, at your agency only",
    "detail.status": "Change the status",
    "detail.status_intro": "{agency} is told of every change.",
    "detail.closed": "This referral is closed: no further change is possible.",
    "detail.reason": "Reason",
    "detail.timeline": "Timeline",
    "detail.changed": "Status changed to “{state}”. {agency} will be told.",
    "detail.erased": "The person's data in this referral was erased after consent was "
                     "withdrawn.",
    "action.accepted": "Accept", "action.rejected": "Reject", "action.in_progress":
        "Mark in progress", "action.completed": "Mark completed", "action.failed":
        "Mark failed", "action.revoked": "Revoke this referral",
    "send.title": "Send a referral",
    "send.intro": "Fill in what the recipient needs to help. Before anything is sent you "
                  "will see exactly what this recipient will receive under the policy of "
                  "{domain}.",
    "section.routing": "Recipient, purpose and consent", "section.person": "Person",
    "section.victim": "Victim context", "section.needs": "Support needs",
    "section.service": "Referral details (service requested)",
    "send.preview_button": "Show what the recipient will receive",
    "send.send_button": "Send to {agency}",
    "send.preview_title": "What {agency} will receive",
    "send.preview_intro": "Checked against the policy of {domain}, version {version} "
                          "({signed}). The policy domain makes the same decision when the "
                          "referral arrives, with the consent it holds at that moment.",
    "send.signed_with": "signed with {key} on {at}",
    "send.forward": "The policy allows this referral: legal basis {basis}; rules {rules}.",
    "send.refused": "The policy domain would refuse this referral: {reason}.",
    "send.refused_hint": "Nothing can be sent as it is. Change the recipient, the purpose or "
                         "the consent, or record a consent that covers it.",
    "send.changed": "You changed the form after the preview. Check the new preview below, "
                    "then send.",
    "send.no_policy": "This gateway has no policy file configured, so no preview can be "
                      "shown. The policy domain still checks every referral; ask your IT "
                      "team to set “policy” in the gateway's settings.",
    "send.policy_error": "The policy file cannot be used ({problem}), so no preview can be "
                         "shown. The policy domain still checks every referral.",
    "send.sent": "Referral {id} is stored and on its way to {agency}. Its timeline is below.",
    "send.consent_none": "(none: another legal basis)",
    "send.consent_hint": "consents recorded at this gateway that are in force",
    "send.subject_hint": "leave empty to use the person of the chosen consent",
    "send.worker_hint": "a pseudonymous id of the case worker, never a name",
    "send.caseref_hint": "your agency's own reference for the case",
    "send.cli": "The same answer as “refmesh policy explain”",
    "preview.receive": "Will receive", "preview.withheld": "Withheld",
    "preview.receive_filled": "What you filled in that will be sent ({n} fields)",
    "preview.withheld_filled": "What you filled in that will be withheld ({n} fields)",
    "preview.all": "Every field, as the policy decides it (also those left empty)",
    "preview.routing": "Routing data always goes with it:",
    "preview.field": "Field", "preview.what": "What happens", "preview.rule": "Rule",
    "preview.here": "In this referral", "preview.filled": "filled", "preview.empty": "empty",
    "what.keep": "sent as it is", "what.generalise": "generalised: {out}",
    "what.city": "reduced to {out}", "what.country": "reduced to {out}",
    "what.pseudonymise": "replaced by a pseudonym", "what.drop": "withheld",
    "what.norule": "withheld: no rule names it",
    "what.consent": "withheld: the consent does not cover this kind of data",
    "what.empty": "(nothing: no age band comes of this date)",
    "what.replaced": "(what you wrote here is not sent: the recipient gets the value "
                     "generalised from {field} in its place)",
    "what.filled": "(the recipient gets the value generalised from {field} here)",
    "consent.title": "Consent",
    "consent.intro": "Record what the person agreed to, as explained in the notice they were "
                     "given. The consent goes to the policy domain, which forwards referrals "
                     "only within it.",
    "consent.record_title": "Record a consent",
    "consent.list_title": "Consents recorded here",
    "consent.empty": "No consent has been recorded at this gateway yet.",
    "consent.submit": "Record consent",
    "consent.recorded": "Consent {id} is recorded and on its way to the policy domain.",
    "consent.withdraw_title": "Withdraw",
    "consent.withdraw_confirm": "The person has withdrawn this consent",
    "consent.withdraw_button": "Record the withdrawal",
    "consent.confirm_needed": "Tick this box to confirm that the person withdrew consent.",
    "consent.withdrawn_msg": "Consent {id} is withdrawn: nothing more is forwarded under it, "
                             "and every agency that received data is asked to erase it.",
    "consent.state.active": "in force", "consent.state.withdrawn": "withdrawn",
    "consent.state.expired": "expired", "consent.state.future": "not yet valid",
    "consent.until": "until {date}", "consent.no_end": "no end date",
    "consent.covers": "Covers", "consent.state": "State", "consent.subject": "Person",
    "consent.id": "Consent", "consent.version": "version {v}",
    "consent.agencies_hint": "any agency of a role ticked below is covered too",
    "consent.countries_hint": "ISO 3166 codes, e.g. ET, PH; only when other countries are "
                              "allowed",
    "outbox.title": "Sent referrals",
    "outbox.intro": "Newest first, each with its closed-loop timeline: sent, received, "
                    "accepted or rejected, in progress, completed or failed. A referral the "
                    "policy domain refused says why.",
    "outbox.empty": "No referral has been sent from this gateway yet.",
    "timeline.by": "by {agency}", "timeline.reason": "reason: {reason}",
    "timeline.why": "Why: {reason}.",
    "erasures.title": "Erasure notices",
    "erasures.intro": "When a person withdraws consent, the policy domain asks every agency "
                      "that received data about them to erase it. This gateway erases the "
                      "referrals named and confirms by itself. Confirm here once you have "
                      "also removed any copies kept outside refmesh (notes, files, e-mail).",
    "erasures.empty": "No erasure notice so far.",
    "erasures.Request": "Erasure request from {agency}",
    "erasures.Confirmation": "{agency} confirms it erased the data",
    "erasures.referrals": "Referrals: {ids}",
    "erasures.ack": "Confirm: copies outside refmesh are removed",
    "erasures.acked": "Confirmed by {user} on {at}",
    "erasures.acked_msg": "Thank you: your confirmation is recorded.",
    "err.required": "This is required.",
    "err.date": "Write a date as YYYY-MM-DD, e.g. 2026-12-01.",
    "err.int": "Write a whole number.",
    "err.countries": "Write ISO 3166 country codes of two capital letters, e.g. ET, PH.",
    "err.language": "Write an ISO 639 language code of 2 or 3 small letters, e.g. amh.",
    "err.choose_consent": "Choose the consent this referral relies on, or another legal "
                          "basis.",
    "err.consent_unknown": "This consent is not recorded here or is no longer in force.",
    "err.subject_mismatch": "This is not the person of the chosen consent; leave it empty to "
                            "use theirs.",
    "err.recipient": "Choose the recipient agency from the list.",
    "err.until_before": "The end of validity must come after its start.",
    "err.countries_without": "Tick “may go to other countries” to name countries.",
    "err.contract": "This value is not allowed here ({problem}).",
}

AR = {
    "app.name": "شبكة الإحالة",
    "skip": "انتقل إلى المحتوى الرئيسي",
    "nav.inbox": "الوارد", "nav.send": "إرسال إحالة", "nav.outbox": "الإحالات المرسلة",
    "nav.consents": "الموافقات", "nav.erasures": "إشعارات المحو", "nav.signout": "تسجيل الخروج",
    "nav.main": "القائمة الرئيسية", "nav.signed_in_as": "مسجّل الدخول باسم {user}",
    "lang.label": "اللغة", "lang.apply": "تغيير اللغة",
    "foot.zone": "الأوقات معروضة بتوقيت {zone}.",
    "required": "مطلوب", "optional": "اختياري",
    "signin.title": "تسجيل الدخول",
    "signin.intro": "يسجّل موظفو الحالات في {agency} الدخول بالحساب الذي أنشأه لهم فريق "
                    "تقنية المعلومات.",
    "signin.username": "اسم المستخدم", "signin.password": "كلمة المرور",
    "signin.submit": "دخول",
    "signin.wrong": "اسم المستخدم أو كلمة المرور غير صحيحة. تحقّق منهما وحاول مرة أخرى.",
    "signin.locked": "أُدخلت كلمة مرور خاطئة مرات كثيرة، فأُوقف هذا الحساب بضع دقائق. إذا "
                     "نسيت كلمة المرور فاطلب من فريق تقنية المعلومات إعادة تعيينها.",
    "signin.expired": "انتهت جلستك (لعدم الاستخدام مدةً أو لإعادة تعيين كلمة المرور). يُرجى "
                      "تسجيل الدخول مجددًا؛ لم يضع شيء مما حفظته.",
    "signin.signed_out": "تم تسجيل خروجك.",
    "csrf.title": "انتهت صلاحية هذا النموذج",
    "csrf.body": "بقي النموذج مفتوحًا مدة طويلة، أو لم يأتِ من صفحة هذه البوابة. لم يُحفظ "
                 "شيء. ارجع وأعد تحميل الصفحة ثم حاول مرة أخرى.",
    "error.title": "حدث خطأ",
    "error.body": "تعذّر على البوابة تنفيذ ذلك الآن ولم يتغيّر شيء. حاول بعد قليل، وأبلغ فريق "
                  "تقنية المعلومات إذا تكرّر ذلك.",
    "notfound.title": "غير موجود",
    "notfound.body": "لا توجد إحالة أو موافقة كهذه في هذه البوابة (ربما مُحيت بعد أن سحب "
                     "الشخص موافقته).",
    "form.errors": "بعض الحقول تحتاج إلى تصحيح: انظر الرسالة بجانب كل منها.",
    "form.list_hint": "افصل بين القيم بفواصل",
    "col.received": "تاريخ الاستلام", "col.sent": "تاريخ الإرسال", "col.from": "من",
    "col.to": "إلى", "col.status": "الحالة", "col.urgency": "درجة الاستعجال",
    "col.stage": "مرحلة آلية الإحالة", "col.due": "الموعد المطلوب", "col.referral": "الإحالة",
    "col.purpose": "الغرض", "col.updated": "آخر تغيير",
    "inbox.title": "الإحالات الواردة",
    "inbox.intro": "الأحدث أولًا. افتح الإحالة لترى ما استلمته جهتك وللرد عليها.",
    "inbox.empty": "لم تصل أي إحالة بعد.",
    "open": "فتح", "none": "لا يوجد",
    "detail.title": "الإحالة",
    "detail.from": "من {agency}", "detail.to": "إلى {agency}",
    "detail.received_note": "هذا بالضبط ما استلمته جهتك. عدد الحقول الأخرى التي حجبتها "
                            "سياسة {domain} أو كانت فارغة لدى الجهة المرسِلة: {n}.",
    "detail.sent_note": "هذه الإحالة كما أرسلتها جهتك. لا تمرّر الجهة المسؤولة عن السياسة "
                        "إلا ما تسمح به سياستها للجهة المستقبِلة.",
    "detail.not_received": "حقول لم تُستلم",
    "detail.pseudonym": "اسم مستعار: ثابت للشخص نفسه، لدى جهتك فقط",
    "detail.status": "تغيير الحالة",
    "detail.status_intro": "تُبلَّغ {agency} بكل تغيير.",
    "detail.closed": "هذه الإحالة مغلقة: لا يمكن أي تغيير آخر.",
    "detail.reason": "السبب",
    "detail.timeline": "التسلسل الزمني",
    "detail.changed": "تغيّرت الحالة إلى «{state}». ستُبلَّغ {agency}.",
    "detail.erased": "مُحيت بيانات الشخص في هذه الإحالة بعد سحب الموافقة.",
    "action.accepted": "قبول", "action.rejected": "رفض", "action.in_progress": "قيد التنفيذ",
    "action.completed": "تم الإنجاز", "action.failed": "تعذّر الإنجاز",
    "action.revoked": "سحب هذه الإحالة",
    "send.title": "إرسال إحالة",
    "send.intro": "املأ ما تحتاجه الجهة المستقبِلة لتقديم المساعدة. قبل إرسال أي شيء سترى "
                  "بالضبط ما ستستلمه هذه الجهة بموجب سياسة {domain}.",
    "section.routing": "الجهة المستقبِلة والغرض والموافقة", "section.person": "الشخص",
    "section.victim": "سياق الضحية", "section.needs": "احتياجات الدعم",
    "section.service": "تفاصيل الإحالة (الخدمة المطلوبة)",
    "send.preview_button": "اعرض ما ستستلمه الجهة",
    "send.send_button": "أرسل إلى {agency}",
    "send.preview_title": "ما ستستلمه {agency}",
    "send.preview_intro": "جرى التحقق وفق سياسة {domain}، الإصدار {version} ({signed}). تتخذ "
                          "الجهة المسؤولة عن السياسة القرار نفسه عند وصول الإحالة، بحسب "
                          "الموافقة التي لديها في تلك اللحظة.",
    "send.signed_with": "موقّعة بالمفتاح {key} في {at}",
    "send.forward": "تسمح السياسة بهذه الإحالة: الأساس القانوني {basis}؛ القواعد {rules}.",
    "send.refused": "سترفض الجهة المسؤولة عن السياسة هذه الإحالة: {reason}.",
    "send.refused_hint": "لا يمكن إرسالها كما هي. غيّر الجهة المستقبِلة أو الغرض أو الموافقة، "
                         "أو سجّل موافقة تشملها.",
    "send.changed": "غيّرت النموذج بعد المعاينة. راجع المعاينة الجديدة أدناه ثم أرسل.",
    "send.no_policy": "لم يُضبط ملف سياسة لهذه البوابة، فلا يمكن عرض معاينة. ما زالت الجهة "
                      "المسؤولة عن السياسة تتحقق من كل إحالة؛ اطلب من فريق تقنية المعلومات "
                      "ضبط «policy» في إعدادات البوابة.",
    "send.policy_error": "لا يمكن استخدام ملف السياسة ({problem})، فلا يمكن عرض معاينة. ما "
                         "زالت الجهة المسؤولة عن السياسة تتحقق من كل إحالة.",
    "send.sent": "حُفظت الإحالة {id} وهي في طريقها إلى {agency}. تسلسلها الزمني أدناه.",
    "send.consent_none": "(لا شيء: أساس قانوني آخر)",
    "send.consent_hint": "الموافقات السارية المسجلة في هذه البوابة",
    "send.subject_hint": "اتركه فارغًا لاستخدام الشخص صاحب الموافقة المختارة",
    "send.worker_hint": "معرّف مستعار لموظف الحالة، وليس اسمه",
    "send.caseref_hint": "مرجع جهتك الخاص بالحالة",
    "send.cli": "الجواب نفسه الذي يعطيه «refmesh policy explain»",
    "preview.receive": "ستستلم", "preview.withheld": "محجوب",
    "preview.receive_filled": "ما عبّأته وسيُرسل (عدد الحقول: {n})",
    "preview.withheld_filled": "ما عبّأته وسيُحجب (عدد الحقول: {n})",
    "preview.all": "كل الحقول كما تقرّرها السياسة (ومنها الفارغة)",
    "preview.routing": "بيانات التوجيه تُرسل دائمًا معها:",
    "preview.field": "الحقل", "preview.what": "ما يحدث", "preview.rule": "القاعدة",
    "preview.here": "في هذه الإحالة", "preview.filled": "مُعبّأ", "preview.empty": "فارغ",
    "what.keep": "يُرسل كما هو", "what.generalise": "يُعمَّم: {out}",
    "what.city": "يُختصر إلى {out}", "what.country": "يُختصر إلى {out}",
    "what.pseudonymise": "يُستبدل باسم مستعار", "what.drop": "يُحجب",
    "what.norule": "يُحجب: لا تذكره أي قاعدة",
    "what.consent": "يُحجب: لا تشمل الموافقة هذا النوع من البيانات",
    "what.empty": "(لا شيء: لا تُستخرج فئة عمرية من هذا التاريخ)",
    "what.replaced": "(لا يُرسل ما كتبته هنا: يتلقى المستلم بدلًا منه القيمة المعمَّمة من {field})",
    "what.filled": "(يتلقى المستلم هنا القيمة المعمَّمة من {field})",
    "consent.title": "الموافقة",
    "consent.intro": "سجّل ما وافق عليه الشخص كما شُرح له في الإشعار الذي تسلّمه. تذهب "
                     "الموافقة إلى الجهة المسؤولة عن السياسة، ولا تمرّر الإحالات إلا في "
                     "حدودها.",
    "consent.record_title": "تسجيل موافقة",
    "consent.list_title": "الموافقات المسجلة هنا",
    "consent.empty": "لم تُسجّل أي موافقة في هذه البوابة بعد.",
    "consent.submit": "تسجيل الموافقة",
    "consent.recorded": "سُجّلت الموافقة {id} وهي في طريقها إلى الجهة المسؤولة عن السياسة.",
    "consent.withdraw_title": "سحب الموافقة",
    "consent.withdraw_confirm": "سحب الشخص هذه الموافقة",
    "consent.withdraw_button": "تسجيل السحب",
    "consent.confirm_needed": "ضع علامة في هذا المربع لتأكيد أن الشخص سحب موافقته.",
    "consent.withdrawn_msg": "سُحبت الموافقة {id}: لن يُمرَّر شيء آخر بموجبها، وطُلب من كل "
                             "جهة استلمت بيانات أن تمحوها.",
    "consent.state.active": "سارية", "consent.state.withdrawn": "مسحوبة",
    "consent.state.expired": "منتهية", "consent.state.future": "لم تسرِ بعد",
    "consent.until": "حتى {date}", "consent.no_end": "بلا تاريخ انتهاء",
    "consent.covers": "تشمل", "consent.state": "الحالة", "consent.subject": "الشخص",
    "consent.id": "الموافقة", "consent.version": "الإصدار {v}",
    "consent.agencies_hint": "تشمل أيضًا كل جهة من الأدوار المحددة أدناه",
    "consent.countries_hint": "رموز ISO 3166، مثل ET و PH؛ فقط إذا سُمح بدول أخرى",
    "outbox.title": "الإحالات المرسلة",
    "outbox.intro": "الأحدث أولًا، ولكل منها تسلسلها الزمني: أُرسلت، استُلمت، قُبلت أو رُفضت، "
                    "قيد التنفيذ، أُنجزت أو تعذّرت. الإحالة التي رفضتها الجهة المسؤولة عن "
                    "السياسة تذكر السبب.",
    "outbox.empty": "لم تُرسل أي إحالة من هذه البوابة بعد.",
    "timeline.by": "من {agency}", "timeline.reason": "السبب: {reason}",
    "timeline.why": "لماذا: {reason}.",
    "erasures.title": "إشعارات المحو",
    "erasures.intro": "عندما يسحب الشخص موافقته تطلب الجهة المسؤولة عن السياسة من كل جهة "
                      "استلمت بيانات عنه أن تمحوها. تمحو هذه البوابة الإحالات المذكورة وتؤكد "
                      "ذلك تلقائيًا. أكّد هنا بعد أن تزيل أيضًا أي نسخ محفوظة خارج النظام "
                      "(ملاحظات، ملفات، بريد إلكتروني).",
    "erasures.empty": "لا توجد إشعارات محو حتى الآن.",
    "erasures.Request": "طلب محو من {agency}",
    "erasures.Confirmation": "تؤكد {agency} أنها محت البيانات",
    "erasures.referrals": "الإحالات: {ids}",
    "erasures.ack": "تأكيد: أُزيلت النسخ الموجودة خارج النظام",
    "erasures.acked": "أكّده {user} في {at}",
    "erasures.acked_msg": "شكرًا: سُجّل تأكيدك.",
    "err.required": "هذا الحقل مطلوب.",
    "err.date": "اكتب التاريخ بالصيغة YYYY-MM-DD، مثل 2026-12-01.",
    "err.int": "اكتب عددًا صحيحًا.",
    "err.countries": "اكتب رموز الدول وفق ISO 3166 من حرفين كبيرين، مثل ET و PH.",
    "err.language": "اكتب رمز اللغة وفق ISO 639 من حرفين أو ثلاثة أحرف صغيرة، مثل amh.",
    "err.choose_consent": "اختر الموافقة التي تستند إليها هذه الإحالة، أو أساسًا قانونيًا آخر.",
    "err.consent_unknown": "هذه الموافقة غير مسجلة هنا أو لم تعد سارية.",
    "err.subject_mismatch": "هذا ليس الشخص صاحب الموافقة المختارة؛ اتركه فارغًا لاستخدامه.",
    "err.recipient": "اختر الجهة المستقبِلة من القائمة.",
    "err.until_before": "يجب أن يأتي انتهاء الصلاحية بعد بدايتها.",
    "err.countries_without": "ضع علامة على «يجوز إرسالها إلى دول أخرى» لتحديد الدول.",
    "err.contract": "هذه القيمة غير مسموح بها هنا ({problem}).",
}

FIELDS_EN = {
    "recipientAgency": "Recipient agency", "purpose": "Purpose", "trmStage": "TRM stage",
    "legalBasis": "Legal basis", "consentId": "Consent it relies on",
    "subjectId": "Person's pseudonymous id", "caseRef": "Case reference",
    "senderCaseWorker": "Case worker id", "referralId": "Referral id",
    "senderAgency": "Sender", "consentVersion": "Consent version", "createdAt": "Created",
    "service.reason": "Reason for the referral", "service.services": "Services requested",
    "service.urgency": "Urgency", "service.dueDate": "Needed by",
    "service.details": "Special arrangements and logistics",
    "person.firstName": "First name", "person.middleName": "Middle name",
    "person.secondName": "Family name", "person.birthdate": "Date of birth",
    "person.ageBand": "Age band", "person.gender": "Gender",
    "person.citizenship": "Citizenship", "person.primaryLanguage": "Primary language",
    "person.secondaryLanguage": "Second language", "person.maritalStatus": "Marital status",
    "person.numberOfChildren": "Number of children",
    "person.identityNumber": "Identity or passport number", "person.email": "E-mail",
    "person.mobilePhone": "Mobile phone", "person.homePhone": "Home phone",
    "person.mailingStreet": "Street", "person.mailingCity": "City",
    "person.mailingState": "State or province", "person.mailingPostalCode": "Postal code",
    "person.mailingCountry": "Country of the address", "person.address": "Address",
    "victim.traffickingStatus": "Trafficking status",
    "victim.traffickingStatusDecisionMakingOrg": "Status decided by",
    "victim.relationshipToTrafficker": "Relationship to the trafficker",
    "victim.ageWhenTrafficked": "Age when trafficked",
    "victim.methodOfRecruitment": "Methods of recruitment",
    "victim.methodsOfControl": "Methods of control",
    "victim.typeOfExploitation": "Type of exploitation",
    "victim.forcedLabourIndustry": "Forced labour industry",
    "victim.typeOfSexExploitation": "Type of sexual exploitation",
    "victim.countryOfExploitation": "Country of exploitation",
    "victim.cityOfExploitation": "City of exploitation",
    "victim.caseComment": "Case comment",
    "needs.supportTypes": "Support needed", "needs.objectives": "Objectives",
    "needs.interpreterLanguage": "Interpreter language", "needs.medicalNotes": "Health needs",
    "needs.safetyRisk": "Safety risk",
    "givenBy": "Given by", "method": "How it was given",
    "language": "Language the notice was explained in", "noticeVersion": "Privacy notice version",
    "purposes": "Purposes", "recipientAgencies": "Agencies", "recipientRoles": "Agency roles",
    "dataCategories": "Data categories", "crossBorder": "May go to other countries",
    "crossBorderCountries": "Countries", "validFrom": "Valid from",
    "validUntil": "Valid until", "channel": "How it was communicated",
}

FIELDS_AR = {
    "recipientAgency": "الجهة المستقبِلة", "purpose": "الغرض", "trmStage": "مرحلة آلية الإحالة",
    "legalBasis": "الأساس القانوني", "consentId": "الموافقة التي تستند إليها",
    "subjectId": "المعرّف المستعار للشخص", "caseRef": "مرجع الحالة",
    "senderCaseWorker": "معرّف موظف الحالة", "referralId": "رقم الإحالة",
    "senderAgency": "الجهة المرسِلة", "consentVersion": "إصدار الموافقة", "createdAt": "أُنشئت",
    "service.reason": "سبب الإحالة", "service.services": "الخدمات المطلوبة",
    "service.urgency": "درجة الاستعجال", "service.dueDate": "مطلوبة بحلول",
    "service.details": "ترتيبات خاصة وتفاصيل لوجستية",
    "person.firstName": "الاسم الأول", "person.middleName": "الاسم الأوسط",
    "person.secondName": "اسم العائلة", "person.birthdate": "تاريخ الميلاد",
    "person.ageBand": "الفئة العمرية", "person.gender": "الجنس",
    "person.citizenship": "الجنسية", "person.primaryLanguage": "اللغة الأساسية",
    "person.secondaryLanguage": "اللغة الثانية", "person.maritalStatus": "الحالة الاجتماعية",
    "person.numberOfChildren": "عدد الأطفال",
    "person.identityNumber": "رقم الهوية أو جواز السفر", "person.email": "البريد الإلكتروني",
    "person.mobilePhone": "الهاتف المحمول", "person.homePhone": "هاتف المنزل",
    "person.mailingStreet": "الشارع", "person.mailingCity": "المدينة",
    "person.mailingState": "المحافظة أو الولاية", "person.mailingPostalCode": "الرمز البريدي",
    "person.mailingCountry": "بلد العنوان", "person.address": "العنوان",
    "victim.traffickingStatus": "وضع الاتجار",
    "victim.traffickingStatusDecisionMakingOrg": "الجهة التي قررت الوضع",
    "victim.relationshipToTrafficker": "العلاقة بالمتاجر",
    "victim.ageWhenTrafficked": "العمر عند الاتجار",
    "victim.methodOfRecruitment": "أساليب التجنيد",
    "victim.methodsOfControl": "أساليب السيطرة",
    "victim.typeOfExploitation": "نوع الاستغلال",
    "victim.forcedLabourIndustry": "قطاع العمل القسري",
    "victim.typeOfSexExploitation": "نوع الاستغلال الجنسي",
    "victim.countryOfExploitation": "بلد الاستغلال",
    "victim.cityOfExploitation": "مدينة الاستغلال",
    "victim.caseComment": "ملاحظة على الحالة",
    "needs.supportTypes": "الدعم المطلوب", "needs.objectives": "الأهداف",
    "needs.interpreterLanguage": "لغة المترجم", "needs.medicalNotes": "الاحتياجات الصحية",
    "needs.safetyRisk": "الخطر على السلامة",
    "givenBy": "مقدّمة من", "method": "طريقة إعطائها",
    "language": "اللغة التي شُرح بها الإشعار", "noticeVersion": "إصدار إشعار الخصوصية",
    "purposes": "الأغراض", "recipientAgencies": "الجهات", "recipientRoles": "أدوار الجهات",
    "dataCategories": "فئات البيانات", "crossBorder": "يجوز إرسالها إلى دول أخرى",
    "crossBorderCountries": "الدول", "validFrom": "صالحة من",
    "validUntil": "صالحة حتى", "channel": "طريقة الإبلاغ",
}

HINTS_EN = {
    "person.citizenship": "ISO 3166 codes, e.g. ET",
    "person.primaryLanguage": "ISO 639 code, e.g. amh", "person.secondaryLanguage":
        "ISO 639 code, e.g. ara", "needs.interpreterLanguage": "ISO 639 code, e.g. amh",
    "person.mailingCountry": "ISO 3166 code, e.g. BH", "victim.countryOfExploitation":
        "ISO 3166 code, e.g. BH", "language": "ISO 639 code, e.g. amh",
    "person.mobilePhone": "E.164, e.g. +973…", "person.homePhone": "E.164, e.g. +973…",
    "victim.methodOfRecruitment": "HTCDS picklist values, e.g. ThroughFriendsOrSocialEvents",
    "victim.methodsOfControl": "HTCDS picklist values, e.g. WithholdsDocuments",
    "victim.typeOfSexExploitation": "HTCDS picklist values",
    "victim.forcedLabourIndustry": "HTCDS picklist value, e.g. T_ActivitiesOfHouseholdsAsEmployers",
}
HINTS_AR = {
    "person.citizenship": "رموز ISO 3166، مثل ET",
    "person.primaryLanguage": "رمز ISO 639، مثل amh", "person.secondaryLanguage":
        "رمز ISO 639، مثل ara", "needs.interpreterLanguage": "رمز ISO 639، مثل amh",
    "person.mailingCountry": "رمز ISO 3166، مثل BH", "victim.countryOfExploitation":
        "رمز ISO 3166، مثل BH", "language": "رمز ISO 639، مثل amh",
    "person.mobilePhone": "بصيغة E.164، مثل ‎+973…", "person.homePhone": "بصيغة E.164، مثل ‎+973…",
    "victim.methodOfRecruitment": "قيم قائمة HTCDS، مثل ThroughFriendsOrSocialEvents",
    "victim.methodsOfControl": "قيم قائمة HTCDS، مثل WithholdsDocuments",
    "victim.typeOfSexExploitation": "قيم قائمة HTCDS",
    "victim.forcedLabourIndustry": "قيمة من قائمة HTCDS، مثل T_ActivitiesOfHouseholdsAsEmployers",
}

ENUM_EN = {
    "Unaquainted": "Not acquainted", "NGO": "NGO", "NonSpecifiedUnknown": "Not specified",
    "NonPoliceGovernmentalOrganization": "Government organisation (not police)",
    "ForcedMilitaryByNonStateActors": "Forced military service (non-state actors)",
    "requested": "Sent", "received": "Received", "accepted": "Accepted",
    "rejected": "Rejected", "in_progress": "In progress", "completed": "Completed",
    "failed": "Failed", "revoked": "Revoked", "refused": "Refused by policy",
    # a referral's timeline: the erasure of its copies (gateways/store.py)
    "erasure_requested": "Erasure requested", "erasure_confirmed": "Erasure confirmed",
    "InPerson": "In person", "VerbalWithInterpreter": "Verbally, with an interpreter",
}
ENUM_AR = {
    # TrmStage
    "Identification": "التعرّف على الضحية", "FirstAssistance": "المساعدة الأولى والحماية",
    "LongTermAssistance": "المساعدة طويلة الأمد والإدماج", "ReturnAndInclusion": "العودة والإدماج",
    "Proceedings": "الإجراءات الجنائية والمدنية",
    # Purpose
    "Services": "الخدمات", "Referral": "الإحالة", "Prosecution": "الملاحقة القضائية",
    "Return": "العودة", "Statistics": "إحصاءات لا تكشف الهوية",
    # LegalBasis
    "Consent": "موافقة الشخص", "LegalObligation": "التزام قانوني", "VitalInterest": "مصلحة حيوية",
    # ReferralReason
    "AdditionalServicesRequired": "خدمات إضافية مطلوبة",
    "MigrationOrChangeOfLocation": "هجرة أو تغيير مكان", "Other": "أخرى",
    # ServiceType
    "Shelter": "إيواء", "MedicalCare": "رعاية طبية", "PsychologicalSupport": "دعم نفسي",
    "Interpreter": "ترجمة فورية", "LegalAid": "مساعدة قانونية", "Investigation": "تحقيق",
    "VoluntaryReturn": "عودة طوعية", "Reception": "استقبال", "Reintegration": "إعادة إدماج",
    # Urgency
    "Routine": "عادية", "Urgent": "عاجلة", "Emergency": "طارئة",
    # Gender
    "Feminine": "أنثى", "Masculine": "ذكر", "TransgenderFeminine": "عابرة جنسيًا (أنثى)",
    "TransgenderMasculine": "عابر جنسيًا (ذكر)", "NonConforming": "غير نمطي",
    "NonSpecifiedUnknown": "غير محدد",
    # MaritalStatus
    "Single": "أعزب / عزباء", "Married": "متزوج / متزوجة", "Widowed": "أرمل / أرملة",
    "Divorced": "مطلّق / مطلّقة", "Separated": "منفصل / منفصلة",
    "RegisteredPartnership": "شراكة مسجّلة",
    # TraffickingStatus
    "PossibleVictimOfTrafficking": "ضحية محتملة للاتجار",
    "ActualVictimOfTrafficking": "ضحية اتجار مؤكدة",
    "NotAVictimOfTrafficking": "ليس ضحية اتجار",
    # DecisionMakingOrg
    "Police": "الشرطة", "NGO": "منظمة غير حكومية", "CourtOrProsecution": "المحكمة أو النيابة",
    "NonPoliceGovernmentalOrganization": "جهة حكومية غير الشرطة",
    # RelationshipToTrafficker
    "Familial": "قريب", "Acquainted": "معرفة", "Unaquainted": "لا معرفة سابقة",
    # ExploitationType
    "ForcedLabour": "العمل القسري", "SexualExploitation": "الاستغلال الجنسي",
    "ChildLabour": "عمل الأطفال", "ForcedMarriage": "الزواج القسري", "Servitude": "الاستعباد",
    "ForcedMilitaryByNonStateActors": "التجنيد القسري من جهات غير حكومية",
    "OrganRemoval": "نزع الأعضاء", "ForcedBegging": "التسول القسري",
    "ForcedAdoption": "التبني القسري", "Surrogacy": "تأجير الأرحام",
    # SupportPlanType
    "Education": "التعليم", "Financial": "الدعم المالي", "Health": "الصحة",
    "LabourExploitationRehabilitation": "التأهيل بعد الاستغلال في العمل", "Legal": "قانوني",
    "Livelihood": "سبل العيش", "RightsBasedTraining": "التدريب على الحقوق",
    "SexualExploitationRehabilitation": "التأهيل بعد الاستغلال الجنسي",
    "SocialCare": "الرعاية الاجتماعية",
    # SafetyRisk
    "Low": "منخفض", "Medium": "متوسط", "High": "مرتفع",
    # ConsentGiver, ConsentMethod, ConsentChannel
    "Person": "الشخص نفسه", "Guardian": "الوصي", "LegalRepresentative": "الممثل القانوني",
    "Written": "كتابيًا", "Verbal": "شفهيًا", "VerbalWithInterpreter": "شفهيًا بمساعدة مترجم",
    "Electronic": "إلكترونيًا", "InPerson": "حضوريًا", "Phone": "بالهاتف",
    "ThroughRepresentative": "عن طريق ممثل",
    # AgencyRole
    "LawEnforcement": "جهة إنفاذ القانون", "CentralGovernmentOrganisation": "جهة حكومية مركزية",
    "LocalGovernmentOrganisation": "جهة حكومية محلية", "ImmigrationService": "دائرة الهجرة",
    "LegalService": "خدمة قانونية", "HealthServiceOrganisation": "جهة خدمات صحية",
    "IntergovernmentalOrganisation": "منظمة حكومية دولية",
    # DataCategory
    "Identity": "الهوية", "Contact": "بيانات الاتصال", "Demographics": "البيانات الديموغرافية",
    "VictimContext": "سياق الضحية", "SupportNeeds": "احتياجات الدعم",
    "ReferralDetails": "تفاصيل الإحالة",
    # ReferralState
    "requested": "أُرسلت", "received": "استُلمت", "accepted": "قُبلت", "rejected": "رُفضت",
    "in_progress": "قيد التنفيذ", "completed": "أُنجزت", "failed": "تعذّرت",
    "revoked": "سُحبت", "refused": "رفضتها السياسة",
    "erasure_requested": "طُلب المحو", "erasure_confirmed": "أُكِّد المحو",
    # ErasureReason
    "ConsentWithdrawn": "سُحبت الموافقة", "ConsentExpired": "انتهت صلاحية الموافقة",
    # StatusReason
    "ClientRefusedServices": "رفض الشخص الخدمات", "LackOfCapacity": "لا تتوفر قدرة استيعابية",
    "ServicesNoLongerNeeded": "لم تعد الخدمات مطلوبة",
    "UnableToContactClient": "تعذّر التواصل مع الشخص",
    "UnableToContactReferredAgency": "تعذّر التواصل مع الجهة المحال إليها",
    "PolicyRefused": "رفض بموجب السياسة",
}

REFUSALS_EN = {
    "consent_missing": "the policy domain holds no consent for this person, or the referral "
                       "names none: record the consent first",
    "consent_mismatch": "the consent held for this person is not the one the referral names",
    "consent_version": "the referral names an older version of the consent",
    "consent_not_yet_valid": "the consent is not valid yet",
    "consent_expired": "the consent has expired",
    "consent_withdrawn": "the person withdrew consent",
    "consent_not_controller": "the consent was recorded by another agency: a referral relies "
                              "only on a consent its sender recorded; record the person's "
                              "consent here first",
    "purpose_not_consented": "the consent does not cover this purpose",
    "recipient_not_consented": "the consent covers neither this agency nor its role",
    "cross_border_not_consented": "the consent does not allow sending data to that country",
    "legal_basis_not_allowed": "the policy does not allow this legal basis for this recipient",
    "no_rule": "the policy has no rule for this recipient's role and this purpose",
    "no_cross_border_rule": "the policy has no rule for sending to that country",
    "invalid_referral": "the referral does not match its contract",
    "unknown_recipient": "the recipient is not in the directory",
    "unknown_sender": "the sender is not in the directory",
}
REFUSALS_AR = {
    "consent_missing": "لا تحتفظ الجهة المسؤولة عن السياسة بموافقة لهذا الشخص، أو لا تذكر "
                       "الإحالة أي موافقة: سجّل الموافقة أولًا",
    "consent_mismatch": "الموافقة المحفوظة لهذا الشخص ليست التي تذكرها الإحالة",
    "consent_version": "تذكر الإحالة إصدارًا أقدم من الموافقة",
    "consent_not_yet_valid": "الموافقة لم تسرِ بعد",
    "consent_expired": "انتهت صلاحية الموافقة",
    "consent_withdrawn": "سحب الشخص موافقته",
    "consent_not_controller": "سجّلت الموافقةَ جهةٌ أخرى: لا تعتمد الإحالة إلا على موافقة "
                              "سجّلتها الجهة المرسِلة؛ سجّل موافقة الشخص هنا أولًا",
    "purpose_not_consented": "لا تشمل الموافقة هذا الغرض",
    "recipient_not_consented": "لا تشمل الموافقة هذه الجهة ولا دورها",
    "cross_border_not_consented": "لا تسمح الموافقة بإرسال البيانات إلى ذلك البلد",
    "legal_basis_not_allowed": "لا تسمح السياسة بهذا الأساس القانوني لهذه الجهة",
    "no_rule": "لا توجد في السياسة قاعدة لدور هذه الجهة ولهذا الغرض",
    "no_cross_border_rule": "لا توجد في السياسة قاعدة للإرسال إلى ذلك البلد",
    "invalid_referral": "الإحالة لا تطابق العقد",
    "unknown_recipient": "الجهة المستقبِلة غير موجودة في الدليل",
    "unknown_sender": "الجهة المرسِلة غير موجودة في الدليل",
}

# Roles, assignment, the record of access, accounts and sign-in refusals (issue 14)
EN.update({
    "nav.access": "Record of access", "nav.accounts": "Accounts", "nav.team": "team {team}",
    "role.caseworker": "case worker", "role.supervisor": "supervisor",
    "role.admin": "gateway administrator",
    "forbidden.title": "Not for your role",
    "forbidden.body": "Your account's role does not allow this page or action. Ask a "
                      "supervisor, or your IT team if your role should change.",
    "signin.wrong": "The username or the password is not right, or the account is paused "
                    "after too many attempts. Check both and try again in a few minutes; if "
                    "you forgot the password, ask your IT team to reset it.",
    "signin.throttled": "Too many sign-in attempts just now. Wait a minute and try again.",
    "consent.withdraw_supervisor": "Recorded by someone else: a supervisor withdraws it.",
    "assign.title": "Assigned to", "assign.to_user": "{user}", "assign.to_team": "team {team}",
    "assign.nobody": "Nobody yet: a supervisor assigns it.",
    "assign.sender_only": "The case worker who sent it.",
    "assign.user": "Case worker", "assign.team": "Team", "assign.submit": "Assign",
    "assign.done": "Assigned: case worker {user}, team {team}.",
    "access.title": "Record of access",
    "access.intro": "Who viewed, changed or exported what, and when: ids only, never the "
                    "data. The newest {n} entries; `refmesh access export` writes them all.",
    "access.intact": "The record's hash chain holds: no entry was changed or removed.",
    "access.broken": "The record's hash chain is broken: an entry was changed or removed. "
                     "Tell your IT team; `refmesh access export` names the entry.",
    "access.when": "When", "access.who": "Who", "access.what": "Action",
    "access.which": "Of what", "access.empty": "Nothing recorded so far.",
    "accounts.title": "Accounts",
    "accounts.intro": "Roles, teams and disabled accounts. New accounts and passwords: "
                      "`refmesh users add` and `refmesh users reset-password`.",
    "accounts.role": "Role", "accounts.team": "Team", "accounts.state": "State",
    "accounts.save": "Save", "accounts.active": "Active",
    "accounts.disabled": "Disabled since {at}", "accounts.disable": "Disable",
    "accounts.enable": "Enable", "accounts.changed": "Account {user} changed.",
})
AR.update({
    "nav.access": "سجل الاطلاع", "nav.accounts": "الحسابات", "nav.team": "الفريق {team}",
    "role.caseworker": "موظف حالات", "role.supervisor": "مشرف", "role.admin": "مدير البوابة",
    "forbidden.title": "ليس لدورك",
    "forbidden.body": "لا يسمح دور حسابك بهذه الصفحة أو بهذا الإجراء. اسأل مشرفًا، أو فريق "
                      "تقنية المعلومات إن كان ينبغي تغيير دورك.",
    "signin.wrong": "اسم المستخدم أو كلمة المرور غير صحيحة، أو أن الحساب موقوف مؤقتًا بعد "
                    "محاولات كثيرة. تحقّق منهما وحاول بعد بضع دقائق؛ وإن نسيت كلمة المرور "
                    "فاطلب من فريق تقنية المعلومات إعادة تعيينها.",
    "signin.throttled": "محاولات دخول كثيرة الآن. انتظر دقيقة ثم حاول مرة أخرى.",
    "consent.withdraw_supervisor": "سجّلها شخص آخر: يسحبها مشرف.",
    "assign.title": "مُسندة إلى", "assign.to_user": "{user}", "assign.to_team": "الفريق {team}",
    "assign.nobody": "لم تُسند بعد: يسندها مشرف.",
    "assign.sender_only": "موظف الحالات الذي أرسلها.",
    "assign.user": "موظف الحالات", "assign.team": "الفريق", "assign.submit": "إسناد",
    "assign.done": "أُسندت: موظف الحالات {user}، الفريق {team}.",
    "access.title": "سجل الاطلاع",
    "access.intro": "من اطّلع على ماذا أو غيّره أو صدّره، ومتى: معرّفات فقط، لا البيانات "
                    "نفسها. أحدث {n} إدخال؛ ويكتبها كلها الأمر refmesh access export.",
    "access.intact": "سلسلة التجزئة في السجل سليمة: لم يُغيَّر أي إدخال ولم يُحذف.",
    "access.broken": "سلسلة التجزئة في السجل مكسورة: غُيّر إدخال أو حُذف. أبلغ فريق تقنية "
                     "المعلومات؛ يسمّي الأمر refmesh access export الإدخال.",
    "access.when": "متى", "access.who": "من", "access.what": "الإجراء",
    "access.which": "على ماذا", "access.empty": "لم يُسجَّل شيء حتى الآن.",
    "accounts.title": "الحسابات",
    "accounts.intro": "الأدوار والفرق والحسابات الموقوفة. الحسابات الجديدة وكلمات المرور: "
                      "refmesh users add و refmesh users reset-password.",
    "accounts.role": "الدور", "accounts.team": "الفريق", "accounts.state": "الحالة",
    "accounts.save": "حفظ", "accounts.active": "نشط",
    "accounts.disabled": "موقوف منذ {at}", "accounts.disable": "إيقاف",
    "accounts.enable": "تفعيل", "accounts.changed": "تغيّر الحساب {user}.",
})

TABLES = {"en": (EN, FIELDS_EN, HINTS_EN, ENUM_EN, REFUSALS_EN),
          "ar": (AR, FIELDS_AR, HINTS_AR, ENUM_AR, REFUSALS_AR)}


def words(symbol: str) -> str:
    """CamelCase or snake_case as words: AdditionalServicesRequired -> Additional services
    required."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|_", " ", symbol)
    return spaced[:1].upper() + spaced[1:].lower() if spaced else spaced


class Text:
    """The page's words in one language; templates call it ``_``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in TABLES else "en"
        self.dir = "rtl" if self.lang in RTL else "ltr"
        self._own = TABLES[self.lang]

    def _pick(self, index: int, key: str) -> str | None:
        return self._own[index].get(key) or TABLES["en"][index].get(key)

    def __call__(self, message: str, /, **values) -> str:
        template = self._pick(0, message)
        if template is None:
            return message
        if not values:
            return template
        if self.dir == "rtl":  # names and ids are often Latin: isolate them (FSI ... PDI)
            values = {k: f"\u2068{v}\u2069" for k, v in values.items()}
        return template.format(**values)

    def field(self, name: str) -> str:
        return self._pick(1, name) or words(name.rpartition(".")[2])

    def hint(self, name: str) -> str | None:
        return self._pick(2, name)

    def enum(self, symbol: str | None) -> str:
        if symbol is None:
            return ""
        return self._own[3].get(symbol) or ENUM_EN.get(symbol) or words(symbol)

    def refusal(self, code: str | None) -> str:
        if not code:
            return ""
        return self._pick(4, code) or code
