"""The online booking pages of a territory (`/<département>/prendre-rendez-vous`): the need and the commune, the lieux
serving it with their first free times, the family's details, the SMS code, the confirmation. Thin views over
lapins.public.online; what the family typed waits in its own (signed) session cookie between the pages, nothing is
stored before the number is checked. Rate-limited per client address (lapins.auth.limits) and per number."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from sqlalchemy import select

from lapins.auth.limits import count_online_number
from lapins.infra.extensions import db
from lapins.locale.communes import Commune, street_key
from lapins.models import PhoneVerification, Rdv, SectorZone, Territory, WaitlistEntry, utcnow
from lapins.booking import sessions
from lapins.models.rdvs import BookingChannel, Participation
from lapins.models.territories import phone_to_call
from lapins.notifications import outbox
from lapins.notifications.links import place_token, rdv_token
from lapins.public import kept_search, online
from lapins.public.blueprint import bp
from lapins.public.online_forms import CodeForm, DetailsForm, ResendForm, SearchForm
from lapins.sectors.communes import communes
from lapins.sectors.editing import SectorError, resolve_commune
from lapins.sectors.imports import STREET
from lapins.sectors.streets import GeocoderDown, Street, find_streets, geocoder_configured

PENDING = "online_booking"  # the session's key: the chosen time, the family's details, the code's verification
DONE = "online_booked"
TOO_MANY_FOR_NUMBER = "Trop d'essais pour ce numéro. Réessayez dans une heure, ou appelez le centre."


def _territory(departement: str) -> Territory:
    territory = db.session.scalar(select(Territory).where(Territory.number == departement.upper()[:3]))
    if territory is None:
        abort(404)
    return territory


def _commune(territory: Territory, form: SearchForm) -> Commune:
    try:
        return resolve_commune(communes(), territory.number, code=form.commune_code.data, typed=form.commune.data)
    except SectorError as error:
        raise online.OnlineError(str(error)) from None


def _streets_needed(territory: Territory, commune: Commune) -> bool:
    """Whether a sector of this commune is made of streets: only then is the street asked for."""
    return db.session.scalar(select(SectorZone.id).where(
        SectorZone.territory_id == territory.id, SectorZone.commune_code == commune.code,
        SectorZone.street_code != "").limit(1)) is not None


@dataclass
class StreetSearch:
    """The family's street in a commune split by street: the one the geocoder chose (`code`, `name`), the others it
    offered, or why none (`note`, in French)."""

    code: str | None = None
    name: str | None = None
    others: list[Street] = field(default_factory=list)
    note: str | None = None
    position: tuple[float, float] | None = None


def _street(commune: Commune, form: SearchForm) -> StreetSearch:
    """The street typed (`voie`), through the geocoder when the territory has one; a street chosen among its
    answers comes back as its code (`rue`), kept only when it is of this commune."""
    code = street_key(form.rue.data or "")
    match = STREET.fullmatch(code)
    if match and match.group(1) == commune.code:
        return StreetSearch(code, (form.voie.data or "").strip() or None)
    typed = (form.voie.data or "").strip()
    if not typed or not geocoder_configured():
        return StreetSearch()
    try:
        found = find_streets(commune.code, typed)
    except GeocoderDown:
        return StreetSearch(note="La recherche de votre rue ne répond pas pour le moment : tous les lieux qui "
                                 "servent une partie de la commune sont proposés.")
    if not found:
        return StreetSearch(note=f"Aucune rue « {typed} » trouvée à {commune.name} : vérifiez son nom. En attendant, "
                                 "tous les lieux qui servent une partie de la commune sont proposés.")
    return StreetSearch(found[0].code, found[0].name, found[1:], position=found[0].position)


@bp.route("/<departement>/prendre-rendez-vous")
def online_start(departement: str):
    now = utcnow()
    kept_key = kept_search.key_of(departement, request.args) if request.args and _same_for_all() else None
    if kept_key is not None:
        body, configured = kept_search.answer(kept_key, now)
        if body is not None:
            at = kept_search.refresh_due(kept_key, now)
            if at is not None:
                _refresh_ahead(kept_key, departement, at)
            return body
        if configured is not None and configured.lieux.day == now.astimezone(configured.lieux.territory.tz).date():
            # Ended by a booking (or the clock) only: the same configuration, the days read again.
            form = SearchForm(request.args)
            form.validate()
            body, kept = _found_page(configured, form, now)
            if kept is not None:
                kept_search.keep(kept_key, *kept, body, since=now, configuration=configured)
            return body
    body, kept, configured = _search_page(departement, now)
    if kept_key is not None and kept is not None:
        kept_search.keep(kept_key, *kept, body, since=now, configuration=configured)
    return body


def _refresh_ahead(key: tuple, departement: str, at) -> None:
    """The kept page's next version, as this search will show at `at` (kept_search: refreshed ahead of the clock),
    computed in a request context of its own with the same address and arguments (no session: the page kept is
    the one every visitor gets)."""
    app = current_app._get_current_object()
    path, query = request.path, request.query_string.decode("latin-1")
    base_url = request.host_url + request.script_root.lstrip("/")

    def job() -> None:
        with app.test_request_context(path, base_url=base_url, query_string=query):
            body, kept, configured = _search_page(departement, at)
            if kept is not None:
                kept_search.keep_ahead(key, *kept, body, since=at, configuration=configured)

    kept_search.refresh(key, job)


@dataclass(frozen=True)
class Configured:
    """What a search page shows that the territory's configuration and the request's arguments alone decide, in
    plain values (online.Configuration): kept with the page, it rebuilds the page with the picker's days when only
    agents' stamps or the clock ended it."""

    lieux: online.Configuration
    needs: tuple[online.Need, ...]
    motif: online.MotifValues  # the motif chosen
    commune: Commune
    street: StreetSearch
    streets: bool  # a sector of the commune is made of streets
    kept: bool  # False: a street looked up by the geocoder (a service of its own), never kept


def _search_page(departement: str, now) -> tuple[str, tuple | None, Configured | None]:
    """The search page of the request's arguments as at `now`, what to keep it on when it may be kept (territory
    id, its stamp, the shown agents' stamps, the moment the clock alone changes it) and its configuration."""
    territory = _territory(departement)
    needs = online.open_needs(territory)
    form = SearchForm(request.args)
    commune, motif, sessions_found = None, None, None
    need = None
    if request.args and needs:
        try:
            motif, need = online.need_of(territory, form.motif.data, collective=None)
        except online.OnlineError as error:
            form.motif.errors = [error.message]
        try:
            commune = _commune(territory, form)
        except online.OnlineError as error:
            form.commune.errors = [error.message]
        if motif is not None and motif.collective and commune is not None and form.validate():
            sessions_found = online.session_offers(territory, motif, commune.code, now)
            form.commune.data, form.commune_code.data = commune.label, commune.code
        elif motif is not None and commune is not None and form.validate():
            streets = motif.sectorised and _streets_needed(territory, commune)
            street = _street(commune, form) if streets else StreetSearch()
            configured = Configured(
                online.configuration(territory, motif, commune, now, street_code=street.code, near=street.position,
                                     motifs=need),
                tuple(needs), online.MotifValues.of(motif), commune, street, streets,
                # A street looked up by the geocoder depends on it too: such a search is not kept.
                kept=not (streets and geocoder_configured() and (form.voie.data or "").strip()))
            body, kept = _found_page(configured, form, now)
            return body, kept, configured
    form.rue.data = None
    session_tokens = {offer.session.id: online.session_token(territory, offer.session, commune.code)
                      for offer in sessions_found or []}
    body = render_template(
        "public/online_start.html", territory=territory, needs=needs, form=form, found=None, motif=motif,
        sessions_found=sessions_found, session_tokens=session_tokens, commune=commune, streets=False,
        street=StreetSearch(), geocoder=geocoder_configured(), tokens={}, waits={}, more={}, tz=territory.tz,
        phones={})
    return body, None, None


def _found_page(configured: Configured, form: SearchForm, now) -> tuple[str, tuple | None]:
    """The page of a search with its lieux, from its configuration and the picker's days at `now`; what to keep it
    on (None when it may not be kept)."""
    searched = online.searched(configured.lieux, now)
    found = searched.offers
    territory, commune, street = configured.lieux.territory, configured.commune, configured.street
    form.commune.data, form.commune_code.data = commune.label, commune.code
    form.rue.data = street.code
    tokens, waits, more = {}, {}, {}
    for offer in found:
        tokens.update(_slot_tokens(territory, offer, commune.code, street.code or ""))
        if offer.following:
            more[offer.serving.lieu.id] = online.dates_token(territory, offer.motif, offer.serving.lieu.id,
                                                             commune.code, street.code, offer.following)
        if offer.days == ():
            waits[offer.serving.lieu.id] = online.wait_token(territory, offer.motif, offer.serving.lieu.id,
                                                             commune.code, street.code or "")
    body = render_template(
        "public/online_start.html", territory=territory, needs=configured.needs, form=form, found=found,
        motif=configured.motif, sessions_found=None, session_tokens={}, commune=commune, streets=configured.streets,
        street=street, geocoder=geocoder_configured(), tokens=tokens, waits=waits, more=more, tz=territory.tz,
        phones={offer.serving.lieu.id: offer.serving.lieu.phone for offer in found})
    if not configured.kept:
        return body, None
    return body, (territory.id, territory.agenda_stamp, searched.agent_stamps,
                  kept_search.kept_until(found, now, territory.tz))


def _same_for_all() -> bool:
    """Whether the page is the same for every visitor: no signed-in agent (the header), no flashed message."""
    return not any(key in session for key in ("_user_id", "_remember", "_flashes")) and \
        current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") not in request.cookies


def _slot_tokens(territory: Territory, offer: online.LieuOffer, commune_code: str, street_code: str = "") -> dict:
    """Each time shown, its signed token, by (lieu id, start): the address it was found for goes with it."""
    lieu_id = offer.serving.lieu.id
    return {(lieu_id, choice.starts_at): online.slot_token(territory, offer.motif, lieu_id, choice.agent_ids[0],
                                                           choice.starts_at, commune_code, street_code)
            for day in offer.days or () for choice in day.choices}


@bp.route("/<departement>/prendre-rendez-vous/dates")
def online_dates(departement: str):
    """« Voir plus de dates »: a week of one lieu's free times from the signed cursor `curseur` (lieu, motif,
    address, first day), with the link to the week after while it is within the motif's maximum delay. A plain
    link, no script."""
    territory = _territory(departement)
    now = utcnow()
    choice = None
    try:
        choice = online.read_dates_token(request.args.get("curseur", ""), territory)
        week = online.week_of(territory, choice, now)
    except online.OnlineError as error:
        flash(error.message, "error")
        if choice is None:
            return redirect(url_for("public.online_start", departement=departement))
        return redirect(url_for("public.online_start", departement=departement, motif=choice.motif_id,
                                commune_code=choice.commune_code, rue=choice.street_code or None))
    offer = week.offer
    lieu = offer.serving.lieu
    following = offer.following and online.dates_token(territory, offer.motif, lieu.id, choice.commune_code,
                                                       choice.street_code, offer.following)
    commune = communes().get(choice.commune_code)
    return render_template(
        "public/online_dates.html", territory=territory, offer=offer, lieu=lieu, motif=offer.motif, week=week,
        commune=commune, tokens=_slot_tokens(territory, offer, choice.commune_code, choice.street_code or ""),
        following=following,
        back=url_for("public.online_start", departement=departement, motif=offer.motif.id,
                     commune_code=choice.commune_code, rue=choice.street_code or None) + f"#lieu-{lieu.id}",
        wait=None if offer.days or week.first else online.wait_token(territory, offer.motif, lieu.id,
                                                                       choice.commune_code, choice.street_code or ""),
        phone=phone_to_call(lieu, lieu.organisation), tz=territory.tz)


def _pending() -> dict:
    return session.get(PENDING) or {}


def _family(data: dict) -> online.Family:
    return online.Family(last_name=data["last_name"], first_name=data["first_name"], phone=data["phone"],
                         email=data.get("email"), child_first_name=data.get("child_first_name"),
                         birth_date=date.fromisoformat(data["birth_date"]))


def _back_to_slots(departement: str, choice: online.SlotChoice | online.WaitChoice | online.SessionChoice | None):
    if choice is None:
        return redirect(url_for("public.online_start", departement=departement))
    if isinstance(choice, online.SessionChoice):
        session_ = db.session.get(Rdv, choice.session_id)
        if session_ is None:
            return redirect(url_for("public.online_start", departement=departement))
        return redirect(url_for("public.online_start", departement=departement, motif=session_.motif_id,
                                commune_code=choice.commune_code))
    return redirect(url_for("public.online_start", departement=departement, motif=choice.motif_id,
                            commune_code=choice.commune_code, **({"rue": choice.street_code} if choice.street_code
                                                                 else {})))


@bp.route("/<departement>/prendre-rendez-vous/coordonnees", methods=["GET", "POST"])
def online_details(departement: str):
    """The family's details for the time it chose (`creneau`, a signed token)."""
    return _details(departement, "slot", request.values.get("creneau", ""))


@bp.route("/<departement>/prendre-rendez-vous/liste-attente", methods=["GET", "POST"])
def online_waitlist(departement: str):
    """The family's details to wait for a slot of the motif at a lieu with none free (`attente`, a signed token)."""
    return _details(departement, "wait", request.values.get("attente", ""))


@bp.route("/<departement>/prendre-rendez-vous/seance", methods=["GET", "POST"])
def online_session(departement: str):
    """The family's details to take a place in the collective session it chose (`seance`, a signed token)."""
    return _details(departement, "session", request.values.get("seance", ""))


@bp.route("/<departement>/prendre-rendez-vous/seance/liste-attente", methods=["GET", "POST"])
def online_session_waitlist(departement: str):
    """The family's details to wait for a place in a full session (`seance`, a signed token)."""
    return _details(departement, "session_wait", request.values.get("seance", ""))


def _details(departement: str, kind: str, token: str):
    territory = _territory(departement)
    now = utcnow()
    starts_at, choice, session_ = None, None, None
    try:
        if kind in ("session", "session_wait"):
            choice = online.read_session_token(token, territory)
            session_ = online.checked_session(territory, choice, now)
            motif, lieu, starts_at = session_.motif, session_.lieu, session_.starts_at
            if kind == "session" and sessions.free_places(session_, now) == 0:
                flash(online.full_message(session_), "error")
                return redirect(url_for("public.online_session_waitlist", departement=departement, seance=token))
        elif kind == "slot":
            choice = online.read_slot_token(token, territory)
            motif, lieu, found = online.checked_choice(territory, choice, now)
            starts_at = found.starts_at
        else:
            choice = online.read_wait_token(token, territory)
            motif, lieu = online.checked_wait(territory, choice, now)
    except online.OnlineError as error:
        flash(error.message, "error")
        return _back_to_slots(departement, choice)  # the search again when the token was good
    form = DetailsForm(territory_number=territory.number, for_self=motif.online_for_self,
                       today=now.astimezone(territory.tz).date())
    if form.validate_on_submit():
        if form.site_web.data:
            abort(400)
        family = {"last_name": form.last_name.data.strip(), "first_name": form.first_name.data.strip(),
                  "phone": form.phone_e164, "email": (form.email.data or "").strip() or None,
                  "child_first_name": None if motif.online_for_self else form.child_first_name.data.strip(),
                  "birth_date": form.birth_date.data.isoformat()}
        pending = _pending()
        verification = db.session.get(PhoneVerification, pending.get("verification") or 0)
        if online.verified(verification, now) and verification.phone == family["phone"] \
                and verification.territory_id == territory.id:
            session[PENDING] = {**pending, "kind": kind, "token": token, "family": family}
            return _finish(departement, territory, verification)
        limit = current_app.config["ONLINE_LIVE_RDVS_PER_NUMBER"]
        if kind == "session" and online.live_online_places(territory, family["phone"], motif, now) >= limit:
            form.phone.errors.append(f"Ce numéro a déjà {limit} inscriptions à venir pour ce motif prises en "
                                     "ligne : pour une autre, appelez le centre.")
        elif kind == "slot" and online.live_online_rdvs(territory, family["phone"], motif, now) >= limit:
            form.phone.errors.append(f"Ce numéro a déjà {limit} rendez-vous à venir pour ce motif pris en ligne : "
                                     "pour un autre, appelez le centre.")
        elif not count_online_number(family["phone"]):
            form.phone.errors.append(TOO_MANY_FOR_NUMBER)
        else:
            try:
                verification = online.send_code(territory, family["phone"], now)
            except online.OnlineError as error:
                form.phone.errors.append(error.message)
            else:
                outbox.kick()
                session[PENDING] = {"kind": kind, "token": token, "family": family, "verification": verification.id}
                return redirect(url_for("public.online_code", departement=departement))
    return render_template("public/online_details.html", territory=territory, form=form, motif=motif, lieu=lieu,
                           starts_at=starts_at, tz=territory.tz, kind=kind, token=token, session_=session_,
                           phone=phone_to_call(lieu, lieu.organisation))


@bp.route("/<departement>/prendre-rendez-vous/code", methods=["GET", "POST"])
def online_code(departement: str):
    territory = _territory(departement)
    pending = _pending()
    verification = db.session.get(PhoneVerification, pending.get("verification") or 0)
    if verification is None or verification.territory_id != territory.id or "family" not in pending:
        flash("Votre demande a expiré : choisissez à nouveau un créneau.", "error")
        return redirect(url_for("public.online_start", departement=departement))
    form = CodeForm()
    if form.validate_on_submit():
        if not count_online_number(verification.phone):
            form.code.errors.append(TOO_MANY_FOR_NUMBER)
        else:
            try:
                online.check_code(verification, form.code.data)
            except online.OnlineError as error:
                form.code.errors.append(error.message)
            else:
                return _finish(departement, territory, verification)
    return render_template("public/online_code.html", territory=territory, form=form, resend=ResendForm(),
                           phone=verification.phone, kind=pending.get("kind"))


@bp.route("/<departement>/prendre-rendez-vous/code/renvoyer", methods=["POST"])
def online_resend(departement: str):
    territory = _territory(departement)
    pending = _pending()
    form = ResendForm()
    if not form.validate_on_submit() or "family" not in pending:
        return redirect(url_for("public.online_start", departement=departement))
    phone = pending["family"]["phone"]
    try:
        if not count_online_number(phone):
            raise online.OnlineError(TOO_MANY_FOR_NUMBER)
        verification = online.send_code(territory, phone)
    except online.OnlineError as error:
        flash(error.message, "error")
    else:
        outbox.kick()
        session[PENDING] = {**pending, "verification": verification.id}
        flash("Un nouveau code vient d'être envoyé.", "success")
    return redirect(url_for("public.online_code", departement=departement))


def _finish(departement: str, territory: Territory, verification: PhoneVerification):
    """The number is checked: book the time chosen, or put the family on the waiting list."""
    pending = _pending()
    choice = None
    try:
        if pending.get("kind") in ("session", "session_wait"):
            choice = online.read_session_token(pending.get("token", ""), territory)
            family = _family(pending["family"])
            if pending["kind"] == "session_wait":
                entry = online.wait_for_session(territory, choice, family, verification)
                session.pop(PENDING, None)
                session[DONE] = {"wait": entry.id}
            else:
                participation = online.sign_up(territory, choice, family, verification)
                outbox.kick()
                session.pop(PENDING, None)
                session[DONE] = {"place": participation.id}
            return redirect(url_for("public.online_done", departement=departement))
        if pending.get("kind") == "wait":
            choice = online.read_wait_token(pending.get("token", ""), territory)
            entry = online.join_waitlist(territory, choice, _family(pending["family"]), verification)
            session.pop(PENDING, None)
            session[DONE] = {"wait": entry.id}
            return redirect(url_for("public.online_done", departement=departement))
        choice = online.read_slot_token(pending.get("token", ""), territory)
        rdv = online.book_online(territory, choice, _family(pending["family"]), verification)
    except online.SessionFull as error:  # filled meanwhile: its waiting list, the number still checked
        flash(error.message, "error")
        session[PENDING] = {**pending, "kind": "session_wait"}
        return redirect(url_for("public.online_session_waitlist", departement=departement,
                                seance=pending.get("token", "")))
    except online.OnlineError as error:  # SlotGone included: nothing was stored, the number stays checked
        flash(error.message, "error")
        return _back_to_slots(departement, choice)
    outbox.kick()
    session.pop(PENDING, None)
    session[DONE] = {"rdv": rdv.id}
    return redirect(url_for("public.online_done", departement=departement))


@bp.route("/<departement>/prendre-rendez-vous/confirme")
def online_done(departement: str):
    territory = _territory(departement)
    done = session.get(DONE) or {}
    if "wait" in done:
        entry = db.session.get(WaitlistEntry, done["wait"] or 0)
        if entry is not None and entry.organisation.territory_id == territory.id:
            return render_template("public/online_waiting.html", territory=territory, entry=entry,
                                   phone=phone_to_call(entry.lieu, entry.organisation))
    if "place" in done:
        participation = db.session.get(Participation, done["place"] or 0)
        if participation is not None and participation.via == BookingChannel.ONLINE \
                and participation.rdv.organisation.territory_id == territory.id:
            return render_template("public/online_session_done.html", territory=territory,
                                   participation=participation, session_=participation.rdv, tz=territory.tz,
                                   link=url_for("family.place_page", token=place_token(participation.id)),
                                   phone=phone_to_call(participation.rdv.lieu, participation.rdv.organisation))
    rdv = db.session.get(Rdv, done.get("rdv") or 0)
    if rdv is None or rdv.booked_via != BookingChannel.ONLINE or rdv.organisation.territory_id != territory.id:
        return redirect(url_for("public.online_start", departement=departement))
    return render_template("public/online_done.html", territory=territory, rdv=rdv, tz=territory.tz,
                           link=url_for("family.rdv_page", token=rdv_token(rdv.id)),
                           phone=phone_to_call(rdv.lieu, rdv.organisation))
