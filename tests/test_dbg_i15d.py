from lapins.models import Sector, SectorZone
from tests.conftest import driver_statements
from tests.test_online_booking import make_clinic, search
def test_dbg(client, db, factories):
    clinic = make_clinic(factories)
    clinic.motif.sectorised = True
    sector = Sector(territory=clinic.territory, name="Nord", lieux=[clinic.lieu])
    sector.zones.append(SectorZone(territory_id=clinic.territory.id, commune_code="97411"))
    db.session.add(sector)
    db.session.commit()
    motif_id = clinic.motif.id
    db.session.remove()
    with driver_statements(db.engine) as statements:
        search(client, motif_id)
    with open("/tmp/i15d_stmts.txt", "w") as f:
        for s, _ in statements: f.write(" ".join(s.split())[:400] + "\n")
