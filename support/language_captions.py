"""Short, caption-like texts in known languages, written for this project (not collected from the web).

Alt-text is short: most LAION captions are 3-15 words. These are the kind of captions a crawl holds
(product shots, photos, stock images), 12 per language, so a language identifier is measured on the
lengths that matter here rather than on paragraphs. Used by ``bench/filters.py`` and the language tests.
"""

from __future__ import annotations

CAPTIONS: dict[str, list[str]] = {
    "en": ["a red bicycle leaning against a brick wall", "sunset over the mountains with clouds",
           "two dogs playing in the snow", "fresh vegetables at the farmers market",
           "modern kitchen with white cabinets", "woman reading a book on the beach",
           "vintage car parked on the street", "close up of a cup of coffee",
           "children running through a park in autumn", "wooden table and chairs in a garden",
           "aerial view of the city at night", "black leather boots for men"],
    "de": ["ein rotes Fahrrad an einer Backsteinmauer", "Sonnenuntergang über den Bergen mit Wolken",
           "zwei Hunde spielen im Schnee", "frisches Gemüse auf dem Wochenmarkt",
           "moderne Küche mit weißen Schränken", "Frau liest ein Buch am Strand",
           "altes Auto parkt auf der Straße", "Nahaufnahme einer Tasse Kaffee",
           "Kinder laufen im Herbst durch den Park", "Holztisch und Stühle im Garten",
           "Luftaufnahme der Stadt bei Nacht", "schwarze Lederstiefel für Herren"],
    "fr": ["un vélo rouge contre un mur de briques", "coucher de soleil sur les montagnes",
           "deux chiens jouent dans la neige", "légumes frais au marché du samedi",
           "cuisine moderne avec des placards blancs", "une femme lit un livre sur la plage",
           "voiture ancienne garée dans la rue", "gros plan sur une tasse de café",
           "des enfants courent dans le parc en automne", "table et chaises en bois dans le jardin",
           "vue aérienne de la ville la nuit", "bottes en cuir noir pour homme"],
    "es": ["una bicicleta roja junto a una pared de ladrillo", "atardecer sobre las montañas con nubes",
           "dos perros jugando en la nieve", "verduras frescas en el mercado",
           "cocina moderna con armarios blancos", "mujer leyendo un libro en la playa",
           "coche antiguo aparcado en la calle", "primer plano de una taza de café",
           "niños corriendo por el parque en otoño", "mesa y sillas de madera en el jardín",
           "vista aérea de la ciudad de noche", "botas de cuero negro para hombre"],
    "it": ["una bicicletta rossa appoggiata a un muro di mattoni", "tramonto sulle montagne con nuvole",
           "due cani giocano nella neve", "verdure fresche al mercato contadino",
           "cucina moderna con mobili bianchi", "donna che legge un libro sulla spiaggia",
           "auto d'epoca parcheggiata in strada", "primo piano di una tazza di caffè",
           "bambini che corrono nel parco in autunno", "tavolo e sedie di legno in giardino",
           "vista aerea della città di notte", "stivali in pelle nera da uomo"],
    "pt": ["uma bicicleta vermelha encostada numa parede de tijolos", "pôr do sol sobre as montanhas",
           "dois cães brincando na neve", "legumes frescos na feira",
           "cozinha moderna com armários brancos", "mulher lendo um livro na praia",
           "carro antigo estacionado na rua", "close de uma xícara de café",
           "crianças correndo no parque no outono", "mesa e cadeiras de madeira no jardim",
           "vista aérea da cidade à noite", "botas de couro preto masculinas"],
    "nl": ["een rode fiets tegen een bakstenen muur", "zonsondergang boven de bergen met wolken",
           "twee honden spelen in de sneeuw", "verse groenten op de markt",
           "moderne keuken met witte kasten", "vrouw leest een boek op het strand",
           "oude auto geparkeerd op straat", "close-up van een kopje koffie",
           "kinderen rennen in de herfst door het park", "houten tafel en stoelen in de tuin",
           "luchtfoto van de stad bij nacht", "zwarte leren laarzen voor heren"],
    "pl": ["czerwony rower oparty o ceglaną ścianę", "zachód słońca nad górami",
           "dwa psy bawią się w śniegu", "świeże warzywa na targu",
           "nowoczesna kuchnia z białymi szafkami", "kobieta czyta książkę na plaży",
           "stary samochód zaparkowany na ulicy", "zbliżenie filiżanki kawy",
           "dzieci biegają po parku jesienią", "drewniany stół i krzesła w ogrodzie",
           "widok miasta nocą z lotu ptaka", "czarne skórzane buty męskie"],
    "ru": ["красный велосипед у кирпичной стены", "закат над горами и облака",
           "две собаки играют в снегу", "свежие овощи на рынке",
           "современная кухня с белыми шкафами", "женщина читает книгу на пляже",
           "старая машина на улице", "чашка кофе крупным планом",
           "дети бегают по парку осенью", "деревянный стол и стулья в саду",
           "вид на ночной город сверху", "мужские чёрные кожаные ботинки"],
    "ja": ["レンガの壁に立てかけた赤い自転車", "雲のかかった山の夕日", "雪の中で遊ぶ二匹の犬",
           "市場の新鮮な野菜", "白い戸棚のあるモダンなキッチン", "ビーチで本を読む女性",
           "通りに停めたクラシックカー", "コーヒーカップのクローズアップ", "秋の公園を走る子供たち",
           "庭の木のテーブルと椅子", "夜の街の空撮", "メンズの黒い革のブーツ"],
    "zh": ["靠在砖墙上的红色自行车", "山上的日落和云彩", "两只狗在雪地里玩耍", "市场上的新鲜蔬菜",
           "白色橱柜的现代厨房", "在海滩上看书的女人", "停在街上的老爷车", "一杯咖啡的特写",
           "秋天在公园里奔跑的孩子们", "花园里的木桌和椅子", "夜晚城市的航拍", "男士黑色皮靴"],
    "tr": ["tuğla duvara yaslanmış kırmızı bir bisiklet", "bulutlu dağların üzerinde gün batımı",
           "karda oynayan iki köpek", "pazarda taze sebzeler",
           "beyaz dolaplı modern mutfak", "plajda kitap okuyan kadın",
           "sokağa park etmiş eski bir araba", "bir fincan kahvenin yakın çekimi",
           "sonbaharda parkta koşan çocuklar", "bahçede ahşap masa ve sandalyeler",
           "gece şehrin havadan görünümü", "erkek siyah deri bot"],
}


def labelled() -> tuple[list[str], list[str]]:
    """(texts, ISO 639-1 codes), every caption once."""
    texts, codes = [], []
    for code, captions in CAPTIONS.items():
        texts += captions
        codes += [code] * len(captions)
    return texts, codes
