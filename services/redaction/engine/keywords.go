package engine

import "strings"

// Context word classes. A word can belong to several.
const (
	kwSSN uint32 = 1 << iota
	kwPhone
	kwCard
	kwNHS
	kwRouting
	kwAccount
	kwPassport
	kwDriver
	kwDOB
	kwDEA
	kwTax
	kwNeg
	kwNameTrigger
	kwGreeting
	kwTitle
	kwStreet
	kwAddr
	kwInj
	kwFirstName
	kwCity
	kwCity2
	kwNINO
	kwIBAN
	kwAuthScheme
)

var keywords = func() map[string]uint32 {
	m := map[string]uint32{}
	add := func(bits uint32, words string) {
		for _, w := range strings.Fields(words) {
			m[w] |= bits
		}
	}
	add(kwSSN, "ssn ssns social security")
	add(kwPhone, "phone telephone tel mobile cell call fax whatsapp contact reach text sms dial phoned ring cellphone landline")
	add(kwCard, "card credit visa mastercard amex debit cc payment pan")
	add(kwNHS, "nhs")
	add(kwRouting, "routing aba rtn transit")
	add(kwAccount, "account acct bank checking savings deposit")
	add(kwPassport, "passport")
	add(kwDriver, "driver drivers driving licence license dl")
	add(kwDOB, "born dob birth birthday birthdate bday")
	add(kwDEA, "dea prescriber")
	add(kwTax, "itin taxpayer tin tax")
	add(kwNINO, "nino insurance ni")
	add(kwIBAN, "iban")
	add(kwAuthScheme, "bearer basic")
	add(kwNeg, "order invoice ticket tracking ref reference version build isbn serial sku model transaction confirmation po part item case release port pid issue commit hash uuid timestamp epoch")
	add(kwNameTrigger, "name named dear sincerely regards signed patient customer employee thanks cheers from "+
		"client applicant claimant tenant guest caller requester requestor recipient sender beneficiary "+
		"borrower policyholder cardholder insured student candidate spouse guardian")
	add(kwGreeting, "hi hello hey")
	add(kwTitle, "mr mrs ms miss dr prof mx sir")
	add(kwStreet, "street st avenue ave road rd boulevard blvd lane ln drive court ct way place pl terrace parkway pkwy highway hwy circle square sq crescent close")
	add(kwAddr, "live lives living located reside resides resident address moved based")
	add(kwInj, "ignore disregard forget override bypass pretend act behave roleplay jailbreak jailbroken developer dan you from reveal print show repeat output display leak new do system god "+
		"without uncensored unfiltered stop break what your simulate ignorez ignoriere ignora ignorare oublie vergiss olvida")
	add(kwFirstName, firstNames)
	add(kwCity, cities)
	add(kwCity2, "new san los las hong united south north saudi buenos tel kuala sao rio mexico hong st abu cape")
	return m
}()

// twoWordPlaces are place names made of two capitalised words.
var twoWordPlaces = func() map[string]bool {
	m := map[string]bool{}
	for _, p := range strings.Split("new york|new jersey|new delhi|new zealand|new mexico|new orleans|san francisco|san diego|san jose|san antonio|los angeles|las vegas|hong kong|united states|united kingdom|south africa|south korea|north korea|north carolina|south carolina|saudi arabia|buenos aires|tel aviv|kuala lumpur|sao paulo|rio de|mexico city|abu dhabi|cape town", "|") {
		m[p] = true
	}
	return m
}()

// firstNames is a small dictionary of common given names. It only fires when the
// name is capitalised and followed by a capitalised surname, or after a greeting.
const firstNames = `james john robert michael william david richard joseph thomas charles christopher daniel matthew anthony mark
donald steven paul andrew joshua kenneth kevin brian george timothy ronald edward jason jeffrey ryan jacob gary nicholas
eric jonathan stephen larry justin scott brandon benjamin samuel gregory alexander frank patrick raymond jack dennis jerry
tyler aaron jose adam nathan henry douglas zachary peter kyle noah ethan jeremy walter christian keith roger terry austin
sean gerald carl harold dylan arthur lawrence jordan jesse bryan billy bruce gabriel joe logan alan juan albert willie
elijah wayne randy vincent mason roy ralph bobby russell bradley philip eugene liam oliver lucas
mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty sandra margaret ashley kimberly
emily donna michelle carol amanda melissa deborah stephanie dorothy rebecca sharon laura cynthia amy kathleen angela
shirley brenda emma anna pamela nicole samantha katherine christine helen debra rachel carolyn janet maria catherine
heather diane olivia julie joyce victoria ruth virginia lauren kelly christina joan evelyn judith andrea hannah megan
cheryl jacqueline martha madison teresa gloria sara janice ann kathryn abigail sophia frances jean alice judy isabella
julia beverly denise marilyn amber danielle charlotte brittany diana natalie sophie chloe mia ava harper zoe ella lily
mohammed muhammad ahmed ali fatima aisha wei li zhang chen wang yuki hiroshi priya raj rahul amit anil sanjay deepak
sunita anjali carlos luis miguel jorge pedro javier diego alejandro sofia lucia valentina camila isabel elena
pierre jean-pierre francois louis hans klaus jurgen stefan anders lars sven ingrid olga ivan dmitri sergei natasha
giovanni marco luca giulia francesca kwame chidi oluwaseun ngozi amara
jane kate katie claire leah nora maya eva nina tom tim mike dave steve jim bob tony nick alex ben dan matt jake luke
omar hassan yusuf khalid tariq nadia leila yasmin layla zara mei hana jin kenji takeshi haruto sakura arjun vikram
ananya kavya rohan ravi vijay lakshmi tunde emeka kofi abebe tomasz piotr marek katarzyna agnieszka joao thiago
gabriela fernanda beatriz lukas felix leon jonas elias finn mila lena emilia marie camille hugo jules ines manon`

// cities is a small dictionary of large cities and countries reported as LOCATION when capitalised.
const cities = `london paris berlin madrid rome tokyo beijing shanghai moscow dubai singapore sydney melbourne toronto
vancouver montreal chicago boston seattle houston dallas atlanta miami denver phoenix philadelphia detroit austin portland
amsterdam brussels vienna zurich geneva stockholm oslo copenhagen helsinki dublin edinburgh manchester birmingham glasgow
lisbon barcelona milan munich hamburg frankfurt prague warsaw budapest athens istanbul cairo lagos nairobi johannesburg
mumbai delhi bangalore chennai kolkata karachi lahore dhaka jakarta manila bangkok seoul osaka taipei hanoi lima bogota
santiago caracas havana
france germany spain italy portugal ireland england scotland wales canada mexico brazil argentina chile colombia peru
china japan india pakistan bangladesh indonesia philippines vietnam thailand malaysia australia russia ukraine poland
netherlands belgium switzerland austria sweden norway denmark finland greece turkey egypt nigeria kenya ethiopia israel
iran iraq`

// kwBloom[len][first] has bit (last) set when some keyword has that length,
// first and last letter; it rejects most words without hashing them.
var kwBloom = func() (t [15][26]uint32) {
	for w := range keywords {
		if len(w) < 15 && isLower(w[0]) && isLower(w[len(w)-1]) {
			t[len(w)][w[0]-'a'] |= 1 << (w[len(w)-1] - 'a')
		}
	}
	return t
}()
